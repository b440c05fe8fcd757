"""The contracts snapshot against the real stack (web, arq worker, Redis, the database): every
answer is instant and comes from the stored snapshot; builds are enqueued once per
(exchange, var); a refresh never waits for the catalog; a failed build keeps the snapshot; new
snapshots are pushed to open pages; the CLI submits and follows the same job."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs.contracts.demo import write_demo_lake
from tests.stack import ROOT, Stack, sse_events

LATENCY_S = 2.0  # the rules provider's latency: every build fetches the catalog live, this slowly
TTL_S = 3.0
CLIENT = httpx.Client(timeout=10)  # shared: a client per request costs more than the answer


@pytest.fixture(scope="module")
def desk(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp(f"contracts-{database}")
    lake = data / "lake"
    for var in ("cu", "al"):
        write_demo_lake(lake / "v1" / "ticks", "SHFE", var, years=1)
    env = {"MARKETDESK_LAKE_DIR": str(lake), "MARKETDESK_CONTRACTS_HISTORY_YEARS": "1",
           "MARKETDESK_CONTRACTS_SNAPSHOT_TTL_S": str(TTL_S),
           "MARKETDESK_CONTRACTS_RULES_LATENCY_MS": str(int(LATENCY_S * 1000)),
           "MARKETDESK_CONTRACTS_CATALOG_TTL_S": "0.5",
           "MARKETDESK_HEARTBEAT_SECONDS": "0.5", "MARKETDESK_RECONCILE_SECONDS": "0.5"}
    with Stack(data / "stack", env=env, database=database) as s:
        s.lake = lake  # type: ignore[attr-defined]
        yield s


def get(stack: Stack, **params: Any) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    r = CLIENT.get(f"{stack.url}/api/contracts", params=params)
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text
    return r.json(), elapsed


def build_jobs(stack: Stack, var: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{stack.url}/api/jobs", params={"kind": "contracts.build", "limit": 200}, timeout=10)
    return [j for j in r.json()["jobs"] if j["params"]["var"] == var]


def ensure_snapshot(stack: Stack, var: str = "cu") -> dict[str, Any]:
    body, _ = get(stack, exchange="SHFE", var=var)
    if body["snapshot_job"]["job_id"]:
        assert stack.wait(body["snapshot_job"]["job_id"], timeout=60)["status"] == "completed"
        body, _ = get(stack, exchange="SHFE", var=var)
    assert body["ok"] is True, body
    return body


def test_a_missing_snapshot_answers_at_once_and_the_build_lands(desk: Stack) -> None:
    body, elapsed = get(desk, exchange="SHFE", var="cu")
    assert elapsed < LATENCY_S  # the build fetches the catalog live: the answer did not wait for it
    assert body["ok"] is False and body["error"] == "contracts_snapshot_building"
    job = body["snapshot_job"]
    assert job["enqueued"] is True and job["status"] == "pending"
    done = desk.wait(job["job_id"], timeout=60)
    assert done["status"] == "completed", done
    body, _ = get(desk, exchange="SHFE", var="cu")
    assert body["ok"] is True and body["cache_stale"] is False and body["catalog_ok"] is True
    assert body["snapshot_job"] == {"enqueued": False, "job_id": None, "status": None}
    assert body["catalog_source"] == "rules" and body["lake_version"] == "v1"
    assert sum(body["completeness"].values()) == len(body["contracts"]) == body["n_contracts"]
    assert body["completeness"]["stale"] == 3 and body["completeness"]["not-downloaded"] == 1
    assert set(body["timings_ms"]) == {"catalog", "local", "total"}
    assert body["timings_ms"]["catalog"] >= LATENCY_S * 1000 * 0.9
    row = body["contracts"][0]
    assert {"symbol", "status", "reason", "expected_days", "days_held", "days_missing", "first_held",
            "last_held", "coverage", "expiry", "open_date", "expired"} <= set(row)


def test_twenty_concurrent_requests_on_a_missing_snapshot_make_one_job(desk: Stack) -> None:
    assert build_jobs(desk, "al") == []
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: get(desk, exchange="SHFE", var="al"), range(20)))
    assert all(a["ok"] is False and a["error"] == "contracts_snapshot_building" for a, _ in answers)
    assert len({a["snapshot_job"]["job_id"] for a, _ in answers}) == 1
    assert sum(a["snapshot_job"]["enqueued"] for a, _ in answers) == 1
    jobs = build_jobs(desk, "al")
    assert len(jobs) == 1
    assert desk.wait(jobs[0]["id"], timeout=60)["status"] == "completed"


def test_a_stale_snapshot_answers_at_once_and_enqueues_exactly_one_build(desk: Stack) -> None:
    before = ensure_snapshot(desk)
    fresh, _ = get(desk, exchange="SHFE", var="cu")
    if fresh["snapshot_age_s"] < TTL_S:
        assert fresh["cache_stale"] is False and fresh["snapshot_job"]["job_id"] is None
    time.sleep(max(TTL_S - fresh["snapshot_age_s"], 0) + 0.3)
    jobs_before = len(build_jobs(desk, "cu"))
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: get(desk, exchange="SHFE", var="cu"), range(10)))
    assert all(a["ok"] is True for a, _ in answers)
    # at once: a build fetches the catalog live, which takes LATENCY_S
    assert max(e for _, e in answers) < LATENCY_S, [round(e, 3) for _, e in answers]
    stale = [a for a, _ in answers if a["cache_stale"]]
    assert stale, "the snapshot was older than the TTL"
    for a in stale:  # the old snapshot, at once, with the rebuild it started or joined
        assert a["snapshot_age_s"] > TTL_S and a["snapshot_cached_at"] == before["snapshot_cached_at"]
    started = {a["snapshot_job"]["job_id"] for a in stale}
    assert len(started) == 1 and None not in started
    assert sum(a["snapshot_job"]["enqueued"] for a, _ in answers) == 1
    assert len(build_jobs(desk, "cu")) == jobs_before + 1  # exactly one build
    assert desk.wait(started.pop(), timeout=60)["status"] == "completed"
    after, _ = get(desk, exchange="SHFE", var="cu")
    assert after["snapshot_cached_at"] > before["snapshot_cached_at"] and after["cache_stale"] is False


def test_refresh_returns_the_cached_snapshot_without_waiting_for_the_catalog(desk: Stack) -> None:
    before = ensure_snapshot(desk)
    body, elapsed = get(desk, exchange="SHFE", var="cu", refresh=1)
    assert elapsed < LATENCY_S
    assert body["ok"] is True and body["snapshot_cached_at"] == before["snapshot_cached_at"]
    assert body["snapshot_job"]["enqueued"] is True
    job = desk.wait(body["snapshot_job"]["job_id"], timeout=60)
    assert job["status"] == "completed" and job["params"]["refresh_catalog"] is True
    assert job["result"]["timings_ms"]["catalog"] >= LATENCY_S * 1000 * 0.9  # it did fetch live
    after, _ = get(desk, exchange="SHFE", var="cu")
    assert after["catalog_cached_at"] > before["catalog_cached_at"]


def test_a_day_added_to_the_lake_is_rescanned_alone_and_counted(desk: Stack) -> None:
    body = ensure_snapshot(desk)
    stale = next(c for c in body["contracts"] if c["status"] == "stale")
    last = date.fromisoformat(stale["last_held"])
    folder = desk.lake / "v1" / "ticks" / f"symbol={stale['symbol']}"  # type: ignore[attr-defined]
    from jobs.contracts.calendar import next_trading_day
    (folder / f"date={next_trading_day(last).isoformat()}").mkdir()
    body, _ = get(desk, exchange="SHFE", var="cu", refresh=1)
    job = desk.wait(body["snapshot_job"]["job_id"], timeout=60)
    assert job["result"]["scan"]["rescanned"] == 1
    after, _ = get(desk, exchange="SHFE", var="cu")
    assert after["scan"]["rescanned_symbols"] == [stale["symbol"]]
    row = next(c for c in after["contracts"] if c["symbol"] == stale["symbol"])
    assert row["days_held"] == stale["days_held"] + 1
    assert row["last_held"] == next_trading_day(last).isoformat()


def test_a_failed_build_keeps_the_previous_snapshot_and_says_why(desk: Stack) -> None:
    before = ensure_snapshot(desk)
    lake: Path = desk.lake  # type: ignore[attr-defined]
    moved = lake.with_name("lake-away")
    lake.rename(moved)
    try:
        r = httpx.post(f"{desk.url}/api/contracts/build", json={"exchange": "SHFE", "var": "cu"}, timeout=10)
        assert r.status_code == 202, r.text
        job = desk.wait(r.json()["job_id"], timeout=60)
        assert job["status"] == "failed" and "lake folder" in job["error"]
        body, _ = get(desk, exchange="SHFE", var="cu")
        assert body["ok"] is True and body["snapshot_cached_at"] == before["snapshot_cached_at"]
        assert body["contracts"] == before["contracts"]
        assert "lake folder" in body["last_refresh_error"]
        page = httpx.get(f"{desk.url}/contracts", params={"exchange": "SHFE", "var": "cu"}, timeout=10)
        assert 'data-testid="refresh-error"' in page.text and "last refresh failed" in page.text
        assert f'data-testid="row-{before["contracts"][0]["symbol"]}"' in page.text
    finally:
        moved.rename(lake)
    r = httpx.post(f"{desk.url}/api/contracts/build", json={"exchange": "SHFE", "var": "cu"}, timeout=10)
    assert desk.wait(r.json()["job_id"], timeout=60)["status"] == "completed"
    body, _ = get(desk, exchange="SHFE", var="cu")
    assert body["last_refresh_error"] is None
    page = httpx.get(f"{desk.url}/contracts", params={"exchange": "SHFE", "var": "cu"}, timeout=10)
    assert 'data-testid="refresh-error"' not in page.text


def test_a_contracts_days(desk: Stack) -> None:
    body = ensure_snapshot(desk)
    gappy = next(c for c in body["contracts"] if c["status"] == "incomplete")
    r = httpx.get(f"{desk.url}/api/contracts/{gappy['symbol']}/days", timeout=10)
    assert r.status_code == 200, r.text
    days = r.json()
    assert len(days["missing"]) == gappy["days_missing"] > 0
    assert len(days["held"]) == gappy["days_held"]
    assert days["start"] == gappy["open_date"] and days["status"] == "incomplete"
    fragment = httpx.get(f"{desk.url}/contracts/{gappy['symbol']}/days", timeout=10).text
    assert fragment.count('data-state="missing"') >= len(days["missing"])
    assert f'data-testid="day-{days["missing"][0]}" data-state="missing"' in fragment
    bad = httpx.get(f"{desk.url}/api/contracts/cu2501/days", timeout=10)
    assert bad.status_code == 400 and "symbol" in bad.text
    unknown = httpx.get(f"{desk.url}/api/contracts/SHFE.cu9901/days", timeout=10)
    assert unknown.status_code == 404 and "SHFE.cu9901" in unknown.text


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"exchange": "XXX", "var": "cu"}, "exchange", "known: SHFE"),
    ({"var": "cu"}, "exchange", "known: SHFE"),
    ({"exchange": "SHFE", "var": "zz"}, "var", "known: cu, al"),
    ({"exchange": "SHFE", "var": "cu", "mode": "fast"}, "mode", "use cache or compute"),
    ({"exchange": "SHFE", "var": "cu", "refresh": "2"}, "refresh", "use 0 or 1"),
])
def test_bad_requests_name_the_field_and_what_is_allowed(desk: Stack, params: dict[str, str], field: str,
                                                        words: str) -> None:
    r = httpx.get(f"{desk.url}/api/contracts", params=params, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == field and words in r.text


def test_bad_build_requests(desk: Stack) -> None:
    r = httpx.post(f"{desk.url}/api/contracts/build", json={"exchange": "SHFE", "var": "zz"}, timeout=10)
    assert r.status_code == 400 and "var" in r.text and "known: cu" in r.text
    r = httpx.post(f"{desk.url}/api/contracts/build", json={"exchange": "LME", "var": "cu"}, timeout=10)
    assert r.status_code == 400 and "exchange" in r.text and "known: SHFE" in r.text


def test_the_page_and_its_embedded_panel(desk: Stack) -> None:
    body = ensure_snapshot(desk)
    for params in ({}, {"embed": "1"}):
        r = httpx.get(f"{desk.url}/contracts", params=params, timeout=10)
        assert r.status_code == 200
        for testid in ("contracts-state", "contracts-table", "summary", "snapshot-age", "timings",
                       "refresh-button", "exchange-select", "var-select", "contract-days"):
            assert f'data-testid="{testid}"' in r.text, testid
        assert r.text.count('data-testid="row-SHFE.cu') == len(body["contracts"])
        assert "topic=contracts:SHFE.cu" in r.text
    assert 'data-testid="nav"' not in httpx.get(f"{desk.url}/contracts?embed=1", timeout=10).text


def test_a_new_snapshot_is_pushed_to_open_pages(desk: Stack) -> None:
    before = ensure_snapshot(desk)
    url = f"{desk.url}/events?topic=contracts:SHFE.cu"
    seen: list[str] = []
    with httpx.stream("GET", url, timeout=httpx.Timeout(10, read=30)) as stream:
        events = sse_events(stream)
        for event in events:  # the state first: the status line and the table
            seen.append(event.get("event", ""))
            if {"contracts-state", "contracts-table"} <= set(seen):
                break
        r = httpx.post(f"{desk.url}/api/contracts/build", json={"exchange": "SHFE", "var": "cu"}, timeout=10)
        job_id = r.json()["job_id"]
        building = table = False
        deadline = time.monotonic() + 30
        for event in events:
            if event.get("event") == "contracts-state" and 'data-testid="building-progress"' in event["data"]:
                building = True
            if event.get("event") == "contracts-table" and before["snapshot_cached_at"] not in event["data"]:
                table = 'data-testid="row-SHFE.cu' in event["data"]
                break
            assert time.monotonic() < deadline, "no new table pushed"
    assert building and table
    assert desk.wait(job_id)["status"] == "completed"


def test_the_cli_builds_and_follows(desk: Stack, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "web.cli", "contracts", "build", "--exchange", "SHFE",
                          "--var", "cu", "--refresh-catalog", "--url", desk.url],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "completed" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "web.cli", "contracts", "build", "--exchange", "SHFE",
                          "--var", "zz", "--url", desk.url], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode != 0 and "known: cu" in bad.stderr
    for verb in (["demo", "lake"], ["contracts", "demo-lake"]):
        target = tmp_path / verb[0]
        made = subprocess.run([sys.executable, "-m", "web.cli", *verb, "--var", "al", "--years", "1",
                               "--lake-dir", str(target)], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert made.returncode == 0, made.stderr
        folders = list((target / "v1" / "ticks").glob("symbol=SHFE.al*/date=*"))
        assert len(folders) > 1000
    shutil.rmtree(tmp_path)


def test_a_cancelled_build_stops_at_once_and_keeps_the_snapshot(desk: Stack) -> None:
    before = ensure_snapshot(desk)
    r = CLIENT.post(f"{desk.url}/api/contracts/build",
                    json={"exchange": "SHFE", "var": "cu", "refresh_catalog": True})
    job_id = r.json()["job_id"]
    desk.wait(job_id, {"running"}, timeout=30)  # fetching the catalog (LATENCY_S)
    assert CLIENT.post(f"{desk.url}/api/jobs/{job_id}/cancel").status_code == 200
    job = desk.wait(job_id, timeout=30)
    assert job["status"] == "cancelled"
    # cancelled while waiting for the catalog, not after it answered
    assert _seconds(job["finished_at"]) - _seconds(job["started_at"]) < LATENCY_S
    after, _ = get(desk, exchange="SHFE", var="cu")
    assert after["snapshot_cached_at"] == before["snapshot_cached_at"] and after["last_refresh_error"] is None
    state = CLIENT.get(f"{desk.url}/contracts").text
    assert 'data-testid="building-progress"' not in state


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()
