"""The symbols API against a real stack (web, arq worker, Redis, SQLite or PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from jobs.symbols.refresh import LOCK_PREFIX
from tests.stack import ROOT, Stack, follow_new, free_port, statuses_of
from tests.symbols.helpers import flatten_bars, level_rows, set_last_updated, state_row

CONFLICT = "Conflict: Symbol was modified by another request. Please retry."
LATENCY_MS = 1500  # a first refresh downloads two years of bars: this long, at least


@pytest.fixture(scope="module")
def sym(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"MARKETDESK_SYNTHETIC_LATENCY_MS": str(LATENCY_MS), "MARKETDESK_HEARTBEAT_SECONDS": "0.5",
           "MARKETDESK_MAX_QUEUED": "200"}
    with Stack(tmp_path_factory.mktemp(f"symbols-{database}"), env=env, database=database) as s:
        yield s


def add(stack: Stack, symbol: str) -> dict[str, Any]:
    r = httpx.post(f"{stack.url}/api/symbols", json={"symbol": symbol}, timeout=10)
    assert r.status_code == 201, r.text
    return dict(r.json())


def refreshed(stack: Stack, symbol: str) -> dict[str, Any]:
    r = httpx.post(f"{stack.url}/api/symbols/{symbol}/refresh?wait=30", timeout=40)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "success"
    return dict(r.json())


def detail(stack: Stack, symbol: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.url}/api/symbols/{symbol}", timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


LIST_FIELDS = {"symbol", "direction", "last_updated", "level_count", "is_stale",
               "hours_since_update", "staleness_message"}


def test_list_and_detail_carry_staleness(sym: Stack) -> None:
    created = add(sym, "qqq")
    assert created["symbol"] == "QQQ"
    assert created["is_stale"] is True and created["staleness_message"] == "Never updated"
    assert created["hours_since_update"] is None and created["last_updated"] is None
    body = httpx.get(f"{sym.url}/api/symbols", timeout=10).json()
    assert set(body) == {"symbols", "count", "staleness_threshold_hours"}
    assert body["staleness_threshold_hours"] == 48
    assert body["count"] == len(body["symbols"]) >= 1
    for item in body["symbols"]:
        assert set(item) == LIST_FIELDS
    done = refreshed(sym, "QQQ")
    assert done["symbol"] == "QQQ" and done["levels_extracted"] >= 1 and done["last_updated"]
    one = detail(sym, "qQq")  # any case
    assert set(one) == LIST_FIELDS | {"levels", "version"}
    assert one["is_stale"] is False and one["staleness_message"] is None
    assert one["hours_since_update"] == 0.0
    assert one["direction"] in ("bullish", "bearish", "neutral")
    assert one["last_updated"] == done["last_updated"]
    assert one["level_count"] == len(one["levels"]) == done["levels_extracted"]
    assert one["version"] == 2
    level = one["levels"][0]
    assert set(level) == {"id", "kind", "price", "strength", "first_touch", "last_touch", "created_at"}
    listed = next(s for s in httpx.get(f"{sym.url}/api/symbols").json()["symbols"] if s["symbol"] == "QQQ")
    assert listed == {k: one[k] for k in LIST_FIELDS}


def test_the_list_turns_stale_at_the_threshold_with_no_write(sym: Stack) -> None:
    """Staleness is computed on every read: the same row, read again past the threshold."""
    add(sym, "CROSS")
    refreshed(sym, "CROSS")
    crossing = datetime.now(UTC) + timedelta(seconds=2)
    set_last_updated(sym, "CROSS", crossing - timedelta(hours=48))

    def listed() -> dict[str, Any]:
        body = httpx.get(f"{sym.url}/api/symbols").json()
        return dict(next(s for s in body["symbols"] if s["symbol"] == "CROSS"))

    before = listed()
    assert before["is_stale"] is False and before["hours_since_update"] == 48.0
    while datetime.now(UTC) < crossing + timedelta(seconds=1.1):
        time.sleep(0.1)
    after = listed()
    assert after["is_stale"] is True
    assert after["staleness_message"] == "Data is 48h old - may be outdated"
    assert detail(sym, "CROSS")["is_stale"] is True


def test_errors_name_what_is_wrong(sym: Stack) -> None:
    for path in ("/api/symbols/NOPE",):
        r = httpx.get(sym.url + path)
        assert r.status_code == 404 and r.json()["detail"] == "Symbol not found"
    r = httpx.delete(f"{sym.url}/api/symbols/NOPE")
    assert r.status_code == 404 and r.json()["detail"] == "Symbol not found"
    r = httpx.post(f"{sym.url}/api/symbols/NOPE/refresh")
    assert r.status_code == 404 and r.json()["detail"] == "Symbol not found"
    r = httpx.post(f"{sym.url}/api/symbols", json={"symbol": "not a ticker"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "symbol"
    assert "'not a ticker' is not a ticker" in r.json()["detail"]
    r = httpx.post(f"{sym.url}/api/symbols", json={})
    assert r.status_code == 400 and r.json()["detail"].startswith("symbol: required")
    add(sym, "DUP")
    r = httpx.post(f"{sym.url}/api/symbols", json={"symbol": "dup"})
    assert r.status_code == 409 and r.json()["detail"] == "symbol: DUP is already tracked"
    for wait in ("31", "-1", "soon"):
        r = httpx.post(f"{sym.url}/api/symbols/DUP/refresh?wait={wait}")
        assert r.status_code == 400 and "wait" in r.json()["detail"], r.text
    r = httpx.get(f"{sym.url}/api/symbols/DUP")
    assert r.json()["version"] == 1  # a refused request created nothing


def test_remove_takes_the_levels_too(sym: Stack) -> None:
    add(sym, "GONE")
    refreshed(sym, "GONE")
    assert level_rows(sym, "GONE")
    r = httpx.delete(f"{sym.url}/api/symbols/gone")
    assert r.status_code == 200 and r.json() == {"symbol": "GONE", "status": "removed"}
    assert level_rows(sym, "GONE") == [] and state_row(sym, "GONE") is None
    assert httpx.get(f"{sym.url}/api/symbols/GONE").status_code == 404


def test_refresh_downloads_missing_bars_first(sym: Stack) -> None:
    add(sym, "DLX")

    def start() -> str:
        r = httpx.post(f"{sym.url}/api/symbols/DLX/refresh", timeout=10)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "refreshing"
        return str(r.json()["job_id"])

    job_id, states = follow_new(sym, start)
    assert statuses_of(states) == ["pending", "downloading_data", "running", "completed"]
    assert states[-1]["result"]["levels_extracted"] == detail(sym, "DLX")["level_count"] > 0
    # the bars are held now: the next refresh goes straight to running
    _, states = follow_new(sym, lambda: httpx.post(f"{sym.url}/api/symbols/DLX/refresh").json()["job_id"])
    assert statuses_of(states) == ["pending", "running", "completed"]


def _fire(urls: list[str]) -> list[httpx.Response]:
    """POST every url at the same moment, from as many threads."""
    gate = threading.Barrier(len(urls))

    def one(url: str) -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            gate.wait()
            return client.post(url)

    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(one, urls))


def _check_one_job(stack: Stack, symbol: str, answers: list[httpx.Response]) -> None:
    assert all(r.status_code in (200, 202) for r in answers), [r.text for r in answers]
    started = [r.json() for r in answers if r.status_code == 202]
    joined = [r.json() for r in answers if r.status_code == 200]
    assert len(started) == 1 and started[0]["status"] == "refreshing"
    assert len(joined) == len(answers) - 1
    for body in joined:
        assert body == {"status": "already_refreshing", "job_id": started[0]["job_id"],
                        "message": f"Refresh already in progress for {symbol}"}
    assert stack.wait(started[0]["job_id"], timeout=60)["status"] == "completed"
    jobs = httpx.get(f"{stack.url}/api/jobs?kind=symbols.refresh&limit=200").json()["jobs"]
    assert [j["id"] for j in jobs if j["params"]["symbol"] == symbol] == [started[0]["job_id"]]
    rows = level_rows(stack, symbol)
    keys = [(r[2], r[3]) for r in rows]  # (kind, price)
    assert len(keys) == len(set(keys)) == detail(stack, symbol)["level_count"] > 0


def test_fifty_simultaneous_refreshes_make_one_job(sym: Stack) -> None:
    add(sym, "FIFTY")
    _check_one_job(sym, "FIFTY", _fire([f"{sym.url}/api/symbols/FIFTY/refresh"] * 50))
    # with the bars stored a refresh takes milliseconds, so fifty requests may now span several
    # jobs: one after another, never two at once, and the levels replaced, never added to
    before = len(level_rows(sym, "FIFTY"))
    again = _fire([f"{sym.url}/api/symbols/FIFTY/refresh"] * 50)
    started = [r.json()["job_id"] for r in again if r.status_code == 202]
    assert 1 <= len(started) < 50
    jobs = sorted((sym.wait(j) for j in started), key=lambda j: j["started_at"])
    assert all(j["status"] == "completed" for j in jobs)
    for earlier, later in zip(jobs, jobs[1:], strict=False):  # (one worker, one clock)
        assert later["started_at"] >= earlier["finished_at"], (earlier, later)
    assert len(level_rows(sym, "FIFTY")) == before


def test_fifty_refreshes_across_two_web_processes_make_one_job(sym: Stack) -> None:
    env = {**sym.env, "MARKETDESK_REDIS_URL": f"unix://{sym.redis_socket}"}
    port = free_port()
    log = open(sym.data_dir / "web2.log", "ab")  # noqa: SIM115
    second = subprocess.Popen([sys.executable, "-m", "web.cli", "web", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        other = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60  # as long as Stack gives `serve` to start
        while True:
            try:
                if httpx.get(f"{other}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and second.poll() is None, \
                (sym.data_dir / "web2.log").read_text()
            time.sleep(0.1)
        add(sym, "TWOWEB")
        urls = [f"{base}/api/symbols/TWOWEB/refresh" for base in (sym.url, other)] * 25
        _check_one_job(sym, "TWOWEB", _fire(urls))
    finally:
        second.terminate()
        second.wait(10)
        log.close()


def test_failed_extraction_answers_500_and_keeps_every_level(sym: Stack) -> None:
    add(sym, "FLAT")
    refreshed(sym, "FLAT")
    levels_before, state_before = level_rows(sym, "FLAT"), state_row(sym, "FLAT")
    assert levels_before
    assert flatten_bars(sym, "FLAT") > 400  # two years of bars, now with no swing in them
    r = httpx.post(f"{sym.url}/api/symbols/FLAT/refresh?wait=30", timeout=40)
    assert r.status_code == 500, r.text
    assert r.json()["detail"].startswith("Refresh failed: FLAT: no swing highs or lows in ")
    assert sym.job(r.json()["job_id"])["status"] == "failed"
    assert level_rows(sym, "FLAT") == levels_before  # row by row: ids, prices, times
    assert state_row(sym, "FLAT") == state_before


def test_a_level_edit_with_a_stale_version_is_refused(sym: Stack) -> None:
    add(sym, "EDIT")
    refreshed(sym, "EDIT")
    read = detail(sym, "EDIT")
    level = read["levels"][0]
    url = f"{sym.url}/api/symbols/EDIT/levels/{level['id']}"
    r = httpx.patch(url, json={"version": read["version"], "strength": 42})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == read["version"] + 1 and r.json()["level"]["strength"] == 42
    r = httpx.patch(url, json={"version": read["version"], "strength": 7})  # the version read before
    assert r.status_code == 409 and r.json()["detail"] == CONFLICT
    assert detail(sym, "EDIT")["levels"][0]["strength"] == 42
    r = httpx.patch(url, json={"version": read["version"] + 1, "colour": "red"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "colour"
    r = httpx.patch(url, json={"strength": 3})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "version"
    other = detail(sym, "EDIT")["levels"][1]
    r = httpx.patch(f"{sym.url}/api/symbols/EDIT/levels/{other['id']}",
                    json={"version": read["version"] + 1, "price": level["price"], "kind": level["kind"]})
    assert r.status_code == 409
    assert r.json()["detail"] == "EDIT already has a level of that kind at that price"
    assert detail(sym, "EDIT")["version"] == read["version"] + 1  # refused whole
    r = httpx.patch(f"{sym.url}/api/symbols/EDIT/levels/999999", json={"version": 1})
    assert r.status_code == 404 and r.json()["detail"] == "Level not found"


def test_the_run_time_lock_keeps_a_second_writer_out(sym: Stack) -> None:
    """While another holder has the symbol's lock (a lost worker still alive), the refresh
    waits in `running` and writes nothing; once released, it completes."""
    add(sym, "LOCKED")
    refreshed(sym, "LOCKED")
    before = state_row(sym, "LOCKED")
    client = redis.Redis(unix_socket_path=str(sym.redis_socket))
    lock = client.lock(LOCK_PREFIX + "LOCKED", timeout=60)
    assert lock.acquire(blocking=False)
    try:
        job_id = httpx.post(f"{sym.url}/api/symbols/LOCKED/refresh").json()["job_id"]
        sym.wait(job_id, {"running"})
        time.sleep(1.5)
        assert sym.job(job_id)["status"] == "running"
        assert state_row(sym, "LOCKED") == before
    finally:
        lock.release()
    assert sym.wait(job_id)["status"] == "completed"
    assert state_row(sym, "LOCKED")[5] == before[5] + 1  # version  # type: ignore[index]
    assert client.exists(LOCK_PREFIX + "LOCKED") == 0  # released at the end
    client.close()


def test_refresh_all_is_one_job_with_an_item_per_symbol(make_stack: Any) -> None:
    stack = make_stack(env={"MARKETDESK_MAX_QUEUED": "50"})
    for symbol in ("AAA", "BBB", "CCC"):
        add(stack, symbol)
    r = httpx.post(f"{stack.url}/api/symbols/refresh?wait=30", timeout=40)
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    assert r.json()["result"]["succeeded"] == ["AAA", "BBB", "CCC"]
    assert all(detail(stack, s)["level_count"] > 0 for s in ("AAA", "BBB", "CCC"))
    flatten_bars(stack, "BBB")
    kept = level_rows(stack, "BBB")
    r = httpx.post(f"{stack.url}/api/symbols/refresh?wait=30", timeout=40)
    body = r.json()
    assert body["status"] == "partial", body
    assert body["result"]["failed"] == [{"item": "BBB", "error": body["result"]["failed"][0]["error"]}]
    assert "no swing highs or lows" in body["result"]["failed"][0]["error"]
    log = [line["message"] for line in stack.job(body["job_id"])["log"]]
    assert any(m.startswith("BBB: BBB: no swing highs or lows") for m in log), log
    assert level_rows(stack, "BBB") == kept
    flatten_bars(stack, "CCC")
    body = httpx.post(f"{stack.url}/api/symbols/refresh?wait=30", timeout=40).json()
    assert body["status"] == "failed" and body["error"].startswith("2 of 3 items failed"), body
    # while one runs, another is refused as already refreshing
    first = httpx.post(f"{stack.url}/api/symbols/refresh")
    second = httpx.post(f"{stack.url}/api/symbols/refresh")
    assert first.status_code == 202
    if second.status_code == 200:  # (unless the first was already over)
        assert second.json()["status"] == "already_refreshing"
        assert second.json()["job_id"] == first.json()["job_id"]
    stack.wait(first.json()["job_id"])


def test_a_refresh_that_cannot_get_the_lock_fails_and_leaves_the_holder_alone(make_stack: Any) -> None:
    stack = make_stack(env={"MARKETDESK_SYMBOL_LOCK_WAIT_SECONDS": "1"})
    add(stack, "HELD")
    refreshed(stack, "HELD")
    before, levels = state_row(stack, "HELD"), level_rows(stack, "HELD")
    client = redis.Redis(unix_socket_path=str(stack.redis_socket))
    lock = client.lock(LOCK_PREFIX + "HELD", timeout=60)
    assert lock.acquire(blocking=False)
    try:
        r = httpx.post(f"{stack.url}/api/symbols/HELD/refresh?wait=20", timeout=30)
        assert r.status_code == 500
        assert r.json()["detail"] == ("Refresh failed: HELD: another refresh held it for 1s; "
                                      "try again later")
        assert state_row(stack, "HELD") == before and level_rows(stack, "HELD") == levels
        assert lock.owned()  # the failed refresh did not take or release the holder's lock
    finally:
        lock.release()
    assert httpx.post(f"{stack.url}/api/symbols/HELD/refresh?wait=20", timeout=30).status_code == 200
    client.close()
