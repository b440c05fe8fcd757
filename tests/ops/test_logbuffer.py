"""The log buffer: masking, bounds, the handler attached once."""

from __future__ import annotations

import importlib
import logging
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

import jobs.ops.logbuffer as logbuffer
from jobs.ops.logbuffer import LogBuffer, mask
from jobs.ops.settings import ops_settings


@pytest.fixture
def clean_root() -> Iterator[None]:
    """A root logger without the buffer's handler; afterwards the root as it was (the session's
    in-process web app, if one runs, keeps its handler for the tests after)."""
    root = logging.getLogger()
    before = {h: list(h.filters) for h in root.handlers}
    logbuffer.detach()
    yield
    importlib.import_module("jobs.ops.logbuffer").detach()
    for handler in [h for h in root.handlers if h not in before]:
        root.removeHandler(handler)
    for handler, filters in before.items():
        root.addHandler(handler)
        handler.filters[:] = filters


@pytest.mark.parametrize(("line", "secret"), [
    ("HTTP Request: GET https://www.alphavantage.co/query?function=TIME_SERIES_DAILY"
     "&symbol=IBM&apikey=SECRETKEY123 \"HTTP/1.1 200 OK\"", "SECRETKEY123"),
    ("connecting to postgresql+asyncpg://desk:hunter2pass@db:5432/marketdesk", "hunter2pass"),
    ("redis://:redispass99@cache:6379/0 unreachable", "redispass99"),
    ("settings: api_key=abcDEF123456 provider=alphavantage", "abcDEF123456"),
    ('{"password": "s3cr3t-value", "user": "x"}', "s3cr3t-value"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
])
def test_secrets_in_a_line_are_masked(line: str, secret: str) -> None:
    masked = mask(line)
    assert secret not in masked
    assert "***" in masked


def test_masking_keeps_the_rest_of_the_line() -> None:
    line = "GET https://host/query?function=X&symbol=IBM&apikey=K1 done"
    assert mask(line) == "GET https://host/query?function=X&symbol=IBM&apikey=*** done"
    assert mask("stored 20 of 20 days for IBM") == "stored 20 of 20 days for IBM"


def test_an_api_key_logged_is_masked_in_the_buffer_and_on_the_console(
        clean_root: None, capsys: pytest.CaptureFixture[str]) -> None:
    console = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(console)
    try:
        buf = LogBuffer(100, 100_000)
        logbuffer.attach("test", buf, ship=False)
        logging.getLogger("httpx").warning("HTTP Request: GET http://x/query?symbol=A&apikey=%s", "TOPSECRET")
    finally:
        root.removeHandler(console)
    lines = buf.query()
    assert lines and "TOPSECRET" not in lines[-1]["message"]
    assert "apikey=***" in lines[-1]["message"]
    assert "TOPSECRET" not in capsys.readouterr().err


def test_ten_thousand_lines_keep_memory_within_the_bound() -> None:
    bound = 200_000
    buf = LogBuffer(max_lines=100_000, max_bytes=bound)  # the bytes bind first
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(10_000):
            buf.add({"at": "2026-11-30T12:00:00+00:00", "level": "info", "logger": "marketdesk.test",
                     "message": f"line {i} " + "x" * 200, "job": None, "source": "test"})
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert buf.bytes <= bound
    assert held <= bound * 1.25, f"{held} bytes held for a bound of {bound}"
    assert 0 < len(buf) < 10_000 and buf.dropped == 10_000 - len(buf)
    assert buf.query(limit=1)[0]["message"].startswith("line 9999 ")  # the newest kept


def test_the_line_bound_holds_too() -> None:
    buf = LogBuffer(max_lines=100, max_bytes=10_000_000)
    for i in range(10_000):
        buf.add({"at": "2026-11-30T12:00:00+00:00", "level": "info", "logger": "t",
                 "message": str(i), "job": None, "source": "t"})
    assert len(buf) == 100
    assert [line["message"] for line in buf.query(limit=3)] == ["9997", "9998", "9999"]


def test_the_handler_survives_a_module_reload_without_duplicating(clean_root: None) -> None:
    buf = LogBuffer(100, 100_000)
    first = logbuffer.attach("test", buf, ship=False)
    reloaded = importlib.reload(logbuffer)
    second = reloaded.attach("test", LogBuffer(100, 100_000), ship=False)
    assert second is first
    root = logging.getLogger()
    assert sum(1 for h in root.handlers if getattr(h, reloaded.MARKER, False)) == 1
    logging.getLogger("marketdesk.test").warning("once")
    assert [line["message"] for line in buf.query()].count("once") == 1
    reloaded.detach()
    assert not any(getattr(h, reloaded.MARKER, False) for h in root.handlers)
    logging.getLogger("marketdesk.test").warning("after detach")
    assert "after detach" not in [line["message"] for line in buf.query()]


def test_the_module_attaches_nothing_on_import(clean_root: None) -> None:
    importlib.reload(logbuffer)
    assert logbuffer.installed() is None


def test_a_web_process_shipping_its_lines_never_attaches_a_workers_handler(
        web: TestClient[Any], clean_root: None) -> None:
    assert web.get("/logs").status_code == 200  # the app, its monitor and its shipping run
    shipping = ops_settings().log_ship_seconds
    time.sleep(shipping * 3)
    found = logbuffer.installed()
    assert found is None, f"the web's shipping attached {found.source!r}"


def test_filters_by_level_job_logger_and_since() -> None:
    buf = LogBuffer(100, 1_000_000)
    job = "a" * 32
    rows = [("debug", "marketdesk.worker", None, "01"), ("info", "marketdesk.worker", job, "02"),
            ("warning", "marketdesk.prices", None, "03"), ("error", "marketdesk.prices.av", job, "04"),
            ("info", "httpx", None, "05")]
    for level, logger, job_id, minute in rows:
        buf.add({"at": f"2026-11-30T12:{minute}:00+00:00", "level": level, "logger": logger,
                 "message": f"{level} {minute}", "job": job_id, "source": "t"})

    def msgs(**kw: object) -> list[str]:
        return [line["message"] for line in buf.query(**kw)]  # type: ignore[arg-type]

    from datetime import UTC, datetime
    assert msgs(level="warning") == ["warning 03", "error 04"]
    assert msgs(job="aaaa") == ["info 02", "error 04"]
    assert msgs(logger="marketdesk.prices") == ["warning 03", "error 04"]
    assert msgs(since=datetime(2026, 11, 30, 12, 4, tzinfo=UTC)) == ["error 04", "info 05"]
    assert msgs(limit=2) == ["error 04", "info 05"]
