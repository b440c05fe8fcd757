"""The /simulations page: its form answers with inline errors or the new job's page."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.simulation.test_simulation_job import models_file
from tests.stack import Stack

HTMX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def site(tmp_path_factory, database) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("simweb")
    with Stack(tmp / "stack", env={"MARKETDESK_MODELS_FILE": models_file(tmp)}, database=database) as s:
        yield s


def test_page_lists_models_as_checkboxes_enabled_ones_checked(site: Stack) -> None:
    page = httpx.get(f"{site.url}/simulations").text
    for name in ("hold", "cross", "mom", "idle"):
        assert f'data-testid="model-{name}"' in page
    assert 'value="hold" data-testid="model-hold" checked' in page
    assert 'value="idle" data-testid="model-idle" >' in page
    assert 'sse-swap="job-new-simulation.run"' in page  # the jobs list grows live


def test_form_errors_come_back_inline_beside_their_fields(site: Stack) -> None:
    before = httpx.get(f"{site.url}/api/jobs").json()["total"]
    r = httpx.post(f"{site.url}/simulations/run", headers=HTMX,
                   data={"start_date": "2025-02-10", "end_date": "2025-02-03", "models": ["hold"]})
    assert r.status_code == 422
    assert 'data-testid="sim-end-error"' in r.text and "on or after start_date" in r.text
    assert 'value="2025-02-10"' in r.text  # what was typed is kept
    r = httpx.post(f"{site.url}/simulations/run", headers=HTMX,
                   data={"start_date": "2025-02-03", "end_date": "2025-02-07", "models": ["zzz"]})
    assert r.status_code == 422
    assert 'data-testid="sim-models-error"' in r.text and "Unknown model" in r.text
    assert httpx.get(f"{site.url}/api/jobs").json()["total"] == before


def test_form_success_redirects_to_the_job_page(site: Stack) -> None:
    r = httpx.post(f"{site.url}/simulations/run?embed=1", headers=HTMX,
                   data={"start_date": "2025-02-03", "end_date": "2025-02-07",
                         "models": ["hold", "mom"]})
    assert r.status_code == 200  # litestar ClientRedirect: 200 + HX-Redirect
    target = r.headers["HX-Redirect"]
    assert target.startswith("/jobs/") and target.endswith("?embed=1")
    job_id = target.split("/")[2].split("?")[0]
    job = site.wait(job_id, timeout=60)
    assert job["status"] == "completed"
    assert job["params"]["model_starts"] == {"hold": "2025-02-03", "mom": "2025-02-03"}
