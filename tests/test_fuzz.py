"""The API fuzzed from its own OpenAPI document (schemathesis): whatever a generated client sends,
no server error, and every answer is one the document describes (status, content type, body).
Select with ``-m fuzz``; the number of cases per operation is bounded (``FUZZ_EXAMPLES``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import Stack

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.mark.fuzz
@pytest.mark.timeout(600)
def test_the_api_keeps_its_own_document(tmp_path: Path) -> None:
    # no worker: submitted jobs stay pending; room for every one the fuzzer submits
    with Stack(tmp_path / "stack", workers=0, env={"MARKETDESK_MAX_QUEUED": "100000"}) as s:
        st = Path(sys.executable).with_name("st")
        run = subprocess.run(
            [str(st), "run", f"{s.url}/schema/openapi.json", "--checks", CHECKS,
             "--max-examples", str(EXAMPLES), "--seed", "9", "--generation-deterministic",
             "--exclude-path", "/events",  # a stream that never ends by design
             "--phases", "examples,coverage,fuzzing", "--workers", "1", "--no-color",
             "--continue-on-failure"],
            cwd=tmp_path, capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
