"""Errors: a refusal the client caused is answered, not logged as ours; anything unexpected is
a JSON 500 that says where to look, with its traceback in the server's log."""

from __future__ import annotations

import logging

import httpx
import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from tests.stack import Stack
from web.common import EXCEPTION_HANDLERS


def test_answered_refusals_leave_no_traceback_in_the_log(stack: Stack) -> None:
    bad = httpx.post(f"{stack.url}/api/prices/download", json={"symbols": ["A B"]})
    missing = httpx.get(f"{stack.url}/api/jobs/{'0' * 32}")
    assert (bad.status_code, missing.status_code) == (400, 404)
    assert "Traceback" not in stack.log()
    assert "JobNotFound" not in stack.log() and "ParamsError" not in stack.log()


def test_an_unexpected_error_is_a_json_500_and_logged_with_its_traceback() -> None:
    @get("/boom")
    async def boom() -> str:
        raise ZeroDivisionError("division by zero")

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    kept, logger = Keep(), logging.getLogger("marketdesk.web")
    logger.addHandler(kept)
    try:
        with TestClient(Litestar([boom], exception_handlers=EXCEPTION_HANDLERS)) as client:
            r = client.get("/boom")
    finally:
        logger.removeHandler(kept)
    assert r.status_code == 500
    assert r.json() == {"status_code": 500,
                        "detail": "Internal error (ZeroDivisionError); it is in the server's log."}
    [record] = kept.records
    assert "GET /boom" in record.getMessage() and record.exc_info is not None


@pytest.mark.parametrize("path", ["/api/jobs?offset=10001", "/jobs?offset=99999999999999999999"])
def test_a_deep_offset_is_refused_naming_the_field_and_the_way_further(web, path: str) -> None:
    """An offset walks every row before the page; deep pages go by `before` instead."""
    r = web.get(path)
    assert r.status_code == 400, r.text
    assert "offset" in r.text
