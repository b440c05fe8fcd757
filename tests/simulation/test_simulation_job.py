"""Simulations end to end through the real stack: trigger, download, run, status, cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.stack import Stack, cancel_latency, follow_new, statuses_of

MODELS_TOML = """
universe = ["SIMA", "SIMB", "SIMC"]

[models.hold]
strategy = "buy_and_hold"

[models.cross]
strategy = "ma_crossover"
params = { fast = 2, slow = 4 }

[models.mom]
strategy = "momentum_rotation"
params = { lookback = 3, top_n = 1, rebalance_days = 2 }

[models.idle]
strategy = "buy_and_hold"
enabled = false
"""


def models_file(tmp: Path) -> str:
    path = tmp / "models.toml"
    path.write_text(MODELS_TOML)
    return str(path)


@pytest.fixture(scope="module")
def sim(tmp_path_factory, database) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("sim")
    env = {"MARKETDESK_MODELS_FILE": models_file(tmp), "MARKETDESK_SYNTHETIC_LATENCY_MS": "150"}
    with Stack(tmp / "stack", env=env, database=database) as s:
        yield s


def trigger(s: Stack, **body: object) -> httpx.Response:
    return httpx.post(f"{s.url}/simulate/trigger", json=body, timeout=10)


def status(s: Stack, job_id: str) -> dict:
    r = httpx.get(f"{s.url}/simulate/status/{job_id}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def download(s: Stack, symbols: list[str], start: str, end: str) -> None:
    r = httpx.post(f"{s.url}/api/prices/download",
                   json={"symbols": symbols, "start_date": start, "end_date": end})
    assert r.status_code == 202, r.text
    assert s.wait(r.json()["job_id"])["status"] == "completed"


def test_download_path_answers_at_once_then_downloads_and_runs(sim: Stack) -> None:
    answers: list[tuple[float, httpx.Response]] = []

    def start() -> str:
        started = time.monotonic()
        r = trigger(sim, start_date="2025-03-03", end_date="2025-03-14")
        answers.append((time.monotonic() - started, r))
        return str(r.json()["job_id"])

    _, states = follow_new(sim, start)
    took, r = answers[0]
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "pending" and body["warnings"] == []
    assert body["total_model_days"] == 30  # 10 trading days x 3 enabled models
    assert took < 0.5, f"trigger took {took:.2f}s"
    assert statuses_of(states) == ["pending", "downloading_data", "running", "completed"]
    downloading = [st for st in states if st["status"] == "downloading_data" and st["progress"]["total"]]
    assert downloading and downloading[-1]["progress"]["total"] == 3  # symbols done of total
    running = [st for st in states if st["status"] == "running"]
    assert running[-1]["progress"]["total"] == 30  # model-days done of total
    st = status(sim, body["job_id"])
    assert st["progress"] == {"total_model_days": 30, "completed": 30, "failed": 0, "skipped": 0,
                              "pending": 0}
    assert st["models"] == ["hold", "cross", "mom"]
    assert st["date_range"][0] == "2025-03-03" and st["date_range"][-1] == "2025-03-14"
    assert len(st["details"]) == 30 and {d["status"] for d in st["details"]} == {"completed"}
    assert st["total_duration_seconds"] > 0 and st["completed_at"]


def test_fast_path_skips_downloading_when_prices_are_stored(sim: Stack) -> None:
    download(sim, ["SIMA", "SIMB", "SIMC"], "2025-04-01", "2025-05-09")
    job_id, states = follow_new(sim, lambda: trigger(
        sim, start_date="2025-05-01", end_date="2025-05-09", models=["hold", "cross"]).json()["job_id"])
    assert statuses_of(states) == ["pending", "running", "completed"]
    assert status(sim, job_id)["progress"]["completed"] == 14


def test_same_range_twice_executes_no_model_day(sim: Stack) -> None:
    first = trigger(sim, start_date="2025-06-02", end_date="2025-06-06", models=["hold"]).json()
    sim.wait(first["job_id"])
    second = trigger(sim, start_date="2025-06-02", end_date="2025-06-06", models=["hold"]).json()
    assert second["total_model_days"] == 0
    assert second["warnings"] == ["hold: 5 model-days already completed, skipped (replace_existing "
                                  "runs them again): 2025-06-02, 2025-06-03, 2025-06-04, "
                                  "2025-06-05, 2025-06-06"]
    job = sim.wait(second["job_id"])
    assert job["status"] == "completed"
    st = status(sim, second["job_id"])
    assert st["progress"]["completed"] == 0 and st["progress"]["skipped"] == 5
    assert {(d["status"], d["error"]) for d in st["details"]} == {("skipped", "Already completed")}
    # replace_existing runs them again
    third = trigger(sim, start_date="2025-06-02", end_date="2025-06-06", models=["hold"],
                    replace_existing=True).json()
    sim.wait(third["job_id"])
    assert status(sim, third["job_id"])["progress"]["completed"] == 5


def test_missing_start_date_resumes_after_last_completed_day(sim: Stack) -> None:
    first = trigger(sim, start_date="2025-07-07", end_date="2025-07-11", models=["cross"]).json()
    sim.wait(first["job_id"])
    r = trigger(sim, end_date="2025-07-18", models=["cross"])
    assert r.status_code == 200, r.text
    assert r.json()["total_model_days"] == 5
    job_id = r.json()["job_id"]
    assert "(resume mode: cross from 2025-07-12)" in r.json()["message"]
    sim.wait(job_id)
    st = status(sim, job_id)
    assert st["date_range"][0] == "2025-07-14"
    assert [d["date"] for d in st["details"]] == ["2025-07-14", "2025-07-15", "2025-07-16",
                                                  "2025-07-17", "2025-07-18"]


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"start_date": "2025/01/02", "end_date": "2025-01-10"}, "start_date", "YYYY-MM-DD"),
    ({"start_date": "2025-01-02", "end_date": "2025-13-10"}, "end_date", "YYYY-MM-DD"),
    ({"start_date": "2025-01-10", "end_date": "2025-01-02"}, "end_date", "on or after start_date"),
    ({"start_date": "2025-01-02", "end_date": "2025-03-10"}, "end_date", "at most 30 days"),
    ({"start_date": "2025-01-02", "end_date": "2025-01-10", "models": ["hold", "nope"]}, "models",
     "Unknown model 'nope'; known models: cross, hold, idle, mom"),
    ({"start_date": "2025-01-02"}, "end_date", "required"),
    ({"start_date": "2025-01-02", "end_date": "2025-01-10", "colour": "red"}, "colour", "not permitted"),
])
def test_bad_trigger_names_the_field_and_creates_nothing(sim: Stack, body: dict, field: str,
                                                         words: str) -> None:
    before = httpx.get(f"{sim.url}/api/jobs").json()["total"]
    r = trigger(sim, **body)
    assert r.status_code == 400, r.text
    errors = r.json()["errors"]
    assert errors[0]["field"] == field
    assert words.lower() in r.json()["detail"].lower()
    assert httpx.get(f"{sim.url}/api/jobs").json()["total"] == before


def test_second_simulation_is_refused_while_one_is_pending_or_running(sim: Stack) -> None:
    first = trigger(sim, start_date="2025-08-04", end_date="2025-08-15").json()
    r = trigger(sim, start_date="2025-08-18", end_date="2025-08-22")
    assert r.status_code == 400
    assert r.json()["detail"] == "Another simulation job is already running or pending"
    sim.wait(first["job_id"], timeout=60)
    later = trigger(sim, start_date="2025-08-18", end_date="2025-08-22")
    assert later.status_code == 200
    sim.wait(later.json()["job_id"], timeout=60)


def test_status_of_unknown_job_is_404(sim: Stack) -> None:
    r = httpx.get(f"{sim.url}/simulate/status/nope")
    assert r.status_code == 404 and r.json()["detail"] == "Job nope not found"


def test_models_api_lists_models_with_parameters(sim: Stack) -> None:
    body = httpx.get(f"{sim.url}/api/models").json()
    models = {m["name"]: m for m in body["models"]}
    assert set(models) == {"hold", "cross", "mom", "idle"}
    assert models["cross"]["params"] == {"fast": 2, "slow": 4}
    assert models["idle"]["enabled"] is False
    assert models["mom"]["universe"] == ["SIMA", "SIMB", "SIMC"]


def test_cancel_during_downloading_data(sim: Stack) -> None:
    r = trigger(sim, start_date="2024-01-02", end_date="2024-01-26")
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    sim.wait(job_id, {"downloading_data"})
    assert httpx.post(f"{sim.url}/api/jobs/{job_id}/cancel").status_code == 200
    job = sim.wait(job_id, {"cancelled", "completed", "failed"}, timeout=5)
    assert job["status"] == "cancelled" and cancel_latency(job) < 1.0


def _fresh_stack(tmp_path: Path, database: str, **env: str) -> Stack:
    base = {"MARKETDESK_MODELS_FILE": models_file(tmp_path)}
    return Stack(tmp_path / "stack", env={**base, **env}, database=database)


def test_cancel_during_running(tmp_path, database) -> None:
    with _fresh_stack(tmp_path, database, MARKETDESK_MAX_SIMULATION_DAYS="5000") as s:
        job_id = trigger(s, start_date="2012-01-03", end_date="2025-01-03").json()["job_id"]
        s.wait(job_id, {"running"}, timeout=60)
        httpx.post(f"{s.url}/api/jobs/{job_id}/cancel")
        job = s.wait(job_id, {"cancelled", "completed", "failed"}, timeout=5)
        assert job["status"] == "cancelled" and cancel_latency(job) < 1.0
        st = status(s, job_id)
        assert 0 < st["progress"]["completed"] < st["progress"]["total_model_days"]


def test_rate_limit_mid_download_completes_on_the_dates_it_has(tmp_path, database) -> None:
    with _fresh_stack(tmp_path, database, MARKETDESK_SYNTHETIC_RATE_LIMIT_PER_MIN="3") as s:
        download(s, ["SIMA", "SIMB"], "2025-09-01", "2025-09-19")
        download(s, ["SIMC"], "2025-09-01", "2025-09-12")
        job_id, states = follow_new(s, lambda: trigger(
            s, start_date="2025-09-08", end_date="2025-09-19").json()["job_id"])
        assert statuses_of(states) == ["pending", "downloading_data", "running", "completed"]
        job = s.job(job_id)
        assert "Rate limit reached - downloaded 0/1 symbols" in job["warnings"]
        assert ("Skipped 5 dates due to incomplete price data: ['2025-09-15', '2025-09-16', "
                "'2025-09-17', '2025-09-18', '2025-09-19']") in job["warnings"]
        st = status(s, job_id)
        assert st["progress"]["completed"] == 15 and st["warnings"] == job["warnings"]
        skipped = {(d["date"], d["error"]) for d in st["details"] if d["status"] == "skipped"}
        assert skipped == {(day, "Incomplete price data") for day in (
            "2025-09-15", "2025-09-16", "2025-09-17", "2025-09-18", "2025-09-19")}


def test_complete_download_failure_fails_with_the_error(tmp_path, database) -> None:
    from tests.fakes.alphavantage import INVALID_CALL, FakeAlphaVantage

    with FakeAlphaVantage() as fake:
        fake.always(INVALID_CALL)
        env = {"MARKETDESK_DEFAULT_PROVIDER": "alphavantage", "MARKETDESK_ALPHAVANTAGE_URL": fake.url,
               "MARKETDESK_ALPHAVANTAGE_API_KEY": "demo-key",
               "MARKETDESK_ALPHAVANTAGE_MIN_INTERVAL_SECONDS": "0.01"}
        with _fresh_stack(tmp_path, database, **env) as s:
            job_id, states = follow_new(s, lambda: trigger(
                s, start_date="2025-10-06", end_date="2025-10-10").json()["job_id"])
            assert statuses_of(states) == ["pending", "downloading_data", "failed"]
            job = s.job(job_id)
            assert job["error"] == "No trading dates available after price data preparation"
            assert "3 symbols failed to download" in job["warnings"]
            assert status(s, job_id)["error"] == job["error"]


def test_results_page_shows_grid_chart_and_metrics(sim: Stack) -> None:
    r = trigger(sim, start_date="2025-03-17", end_date="2025-03-21", models=["hold", "mom"])
    job_id = r.json()["job_id"]
    sim.wait(job_id)
    page = httpx.get(f"{sim.url}/jobs/{job_id}").text
    assert 'data-testid="cell-hold-2025-03-17" data-status="completed"' in page
    assert 'data-testid="curve-hold"' in page and 'data-testid="curve-mom"' in page
    assert 'data-testid="metrics-mom"' in page


def test_retry_waits_its_turn_like_a_trigger(sim: Stack) -> None:
    first = trigger(sim, start_date="2025-11-03", end_date="2025-11-07", models=["hold"]).json()
    sim.wait(first["job_id"])
    running = trigger(sim, start_date="2025-11-10", end_date="2025-11-14").json()
    r = httpx.post(f"{sim.url}/api/jobs/{first['job_id']}/retry")
    assert r.status_code == 409
    assert r.json()["detail"] == "Another simulation job is already running or pending"
    sim.wait(running["job_id"], timeout=60)
    r = httpx.post(f"{sim.url}/api/jobs/{first['job_id']}/retry")
    assert r.status_code == 202
    sim.wait(r.json()["job_id"], timeout=60)
