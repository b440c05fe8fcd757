"""What the web answers by itself: /api/health, history, logs, /metrics, the pages, the
badge, bad input, and timezone-aware times in every payload."""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import datetime
from typing import Any

import sqlmodel
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from jobs.db import UTCDateTime

ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _times(value: Any, path: str = "$") -> list[tuple[str, str]]:
    """Every string in a payload that reads as a date and time, with where it is."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += _times(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _times(v, f"{path}[{i}]")
    elif isinstance(value, str) and ISO_RE.match(value):
        found.append((path, value))
    return found


def assert_all_aware(payload: Any) -> int:
    times = _times(payload)
    naive = [(p, v) for p, v in times if datetime.fromisoformat(v).tzinfo is None]
    assert not naive, f"naive datetimes in the payload: {naive[:5]}"
    return len(times)


def test_api_health_answers_from_the_live_check_and_names_what_is_wrong(web: TestClient[Any]) -> None:
    r = web.get("/api/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["components"]["database"]["ok"] and body["components"]["redis"]["ok"]
    assert body["components"]["database"]["latency_ms"] is not None
    # this app runs no worker: degraded, and it says why
    assert body["status"] == "amber"
    assert "no worker alive" in body["reasons"]
    assert body["workers"] == {"alive": 0, "ids": []}
    lag = next(iter(body["event_loop_lag"].values()))
    assert set(lag) >= {"max_ms", "p99_ms"}


def test_history_refuses_an_unknown_window_naming_the_allowed_ones(web: TestClient[Any]) -> None:
    r = web.get("/api/health/history", params={"window": "2h"})
    assert r.status_code == 400
    assert "window" in r.json()["detail"] and "1h, 24h, 30d" in r.json()["detail"]
    for window in ("1h", "24h", "30d"):
        r = web.get("/api/health/history", params={"window": window})
        assert r.status_code == 200 and r.json()["window"] == window


def test_api_logs_shows_this_process_lines_masked_and_filters_them(web: TestClient[Any]) -> None:
    logging.getLogger("marketdesk.test.ops").warning(
        "calling https://www.alphavantage.co/query?symbol=IBM&apikey=WEBSECRET42 for job %s", "b" * 32)
    r = web.get("/api/logs", params={"logger": "marketdesk.test", "level": "warning"})
    assert r.status_code == 200, r.text
    lines = r.json()["lines"]
    assert lines, r.json()
    line = lines[-1]
    assert "WEBSECRET42" not in line["message"] and "apikey=***" in line["message"]
    assert line["job"] == "b" * 32 and line["level"] == "warning"
    assert web.get("/api/logs", params={"job": "b" * 32}).json()["lines"]
    assert not web.get("/api/logs", params={"logger": "marketdesk.test", "level": "error"}).json()["lines"]
    page = web.get("/logs", params={"logger": "marketdesk.test"})
    assert page.status_code == 200 and "apikey=***" in page.text and "WEBSECRET42" not in page.text


def test_api_logs_refuses_bad_filters_naming_the_field(web: TestClient[Any]) -> None:
    for params, field in (({"level": "loud"}, "level"), ({"job": "not-a-job"}, "job"),
                          ({"since": "yesterday"}, "since"), ({"limit": "0"}, "limit"),
                          ({"logger": "a b"}, "logger")):
        r = web.get("/api/logs", params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["detail"].startswith(field), r.json()
    assert web.get("/logs", params={"level": "loud"}).status_code == 400


def test_metrics_parse_and_count_requests_per_route(web: TestClient[Any]) -> None:
    def requests_to(route: str) -> float:
        text = web.get("/metrics").text
        for family in text_string_to_metric_families(text):
            if family.name == "marketdesk_http_requests":
                return sum(s.value for s in family.samples
                           if s.name.endswith("_total") and s.labels["route"] == route
                           and s.labels["status"] == "200")
        return 0.0

    before = requests_to("/api/jobs/{job_id}")
    assert web.get("/api/jobs/" + "0" * 32).status_code == 404
    web.get("/api/jobs")
    web.get("/api/jobs")
    assert requests_to("/api/jobs") >= 2
    assert requests_to("/api/jobs/{job_id}") == before  # the 404 counts under its own status
    families = {f.name: f for f in text_string_to_metric_families(web.get("/metrics").text)}
    assert {"marketdesk_http_request_duration_seconds", "marketdesk_component_up",
            "marketdesk_workers_alive", "marketdesk_event_loop_lag_seconds",
            "marketdesk_jobs_finished"} <= set(families)
    up = {s.labels["component"]: s.value for s in families["marketdesk_component_up"].samples}
    assert up == {"database": 1.0, "redis": 1.0}
    assert web.get("/metrics").headers["content-type"].startswith("text/plain")


def test_every_page_carries_the_badge_and_subscribes_to_its_topic(web: TestClient[Any]) -> None:
    for path in ("/", "/jobs", "/prices", "/operations", "/logs"):
        r = web.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert 'data-testid="ops-badge"' in r.text, path
        assert re.search(r'sse-connect="/events\?[^"]*topic=ops[&"]', r.text), path
    embedded = web.get("/operations", params={"embed": "1"})
    assert embedded.status_code == 200 and 'data-testid="ops-badge"' not in embedded.text
    assert "topic=ops&" not in embedded.text and 'data-testid="ops-panel"' in embedded.text


def test_the_operations_page_shows_charts_workers_and_caches(web: TestClient[Any]) -> None:
    for window in ("1h", "24h", "30d"):
        r = web.get("/operations", params={"window": window})
        assert r.status_code == 200
        for testid in ("ops-panel", "chart-db_ms", "chart-lag_ms", "ops-workers", "ops-caches",
                       "ops-kinds", "ops-trends", "cache-web.finished_rows", "cache-ops.history",
                       "cache-prices.calendar.year"):
            assert f'data-testid="{testid}"' in r.text, (window, testid)
        assert f"topic=opspage:{window}" in r.text
    assert web.get("/operations", params={"window": "1y"}).status_code == 400


def test_every_datetime_in_the_models_is_timezone_aware() -> None:
    """Every datetime column of every table (the engine's and the domains') is UTCDateTime."""
    from jobs.migrate import target_metadata

    target_metadata()  # imports every domain's tables

    naive = []
    for table in sqlmodel.SQLModel.metadata.tables.values():
        for column in table.columns:
            python_type = getattr(column.type, "python_type", None)
            try:
                is_datetime = python_type is datetime or column.type.python_type is datetime
            except NotImplementedError:
                is_datetime = False
            if is_datetime and not isinstance(column.type, UTCDateTime):
                naive.append(f"{table.name}.{column.name}")
    assert not naive, f"datetime columns that may hand back naive times: {naive}"


def test_every_datetime_in_the_api_payloads_is_timezone_aware(web: TestClient[Any]) -> None:
    r = web.post("/api/jobs", json={"kind": "prices.download", "params": {
        "symbols": ["AAPL"], "start_date": "2025-01-02", "end_date": "2025-01-10"}})
    assert r.status_code in (202, 201), r.text
    job_id = r.json()["id"] if "id" in r.json() else r.json()["job_id"]
    seen = 0
    for path in ("/api/health", "/api/health/history?window=1h", "/api/logs",
                 "/api/jobs", f"/api/jobs/{job_id}", "/api/prices/coverage", "/api/models"):
        resp = web.get(path)
        assert resp.status_code == 200, (path, resp.text[:200])
        seen += assert_all_aware(resp.json())
    assert seen > 5  # the audit looked at real times


def test_each_domain_page_carries_its_kinds_metrics_panel(web: TestClient[Any]) -> None:
    for path, kinds in (("/prices", ["prices.download"]), ("/simulations", ["simulation.run"]),
                        ("/contracts", ["contracts.build"]),
                        ("/symbols", ["symbols.refresh", "symbols.refresh_all"])):
        r = web.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        connect = re.search(r'sse-connect="([^"]*)"', r.text).group(1)  # type: ignore[union-attr]
        for kind in kinds:
            assert f'data-kind="{kind}"' in r.text, (path, kind)
            assert f"topic=opskind:{kind}" in connect, (path, connect)


def test_a_kinds_metrics_fragment_sums_its_samples(tmp_path) -> None:
    """The panel's figures and charts come from the kind's own rows of the health samples."""
    import asyncio
    import random
    from datetime import timedelta

    from jobs.db import Database, utcnow
    from tests.inprocess import app_client
    from tests.ops.samples import insert_samples, sample_values

    with app_client(tmp_path) as client:
        rng, now = random.Random(3), utcnow()
        rows = [sample_values(now - timedelta(minutes=m), rng) for m in (90, 60, 30, 5)]
        finished = sum(r["kinds"].get("prices.download", {}).get("finished", 0) for r in rows)
        failed = sum(r["kinds"].get("prices.download", {}).get("failed", 0) for r in rows)
        assert finished  # the seed gives some

        async def insert() -> None:
            db = Database(f"sqlite:///{tmp_path / 'web.db'}")
            try:
                await insert_samples(db, rows)
            finally:
                await db.dispose()
        asyncio.run(insert())
        r = client.get("/operations/kinds/prices.download")
        assert r.status_code == 200, r.text
        assert f'data-testid="kind-finished">{finished}<' in r.text
        assert f'data-testid="kind-failed">{failed}' in r.text
        assert r.text.count("<circle") >= 4  # one hoverable dot per bucket per chart
        other = client.get("/operations/kinds/simulation.run")
        assert "No simulation.run job finished in the last 24 hours." in other.text
        missing = client.get("/operations/kinds/nope.nothing")
        assert missing.status_code == 404 and "prices.download" in missing.text
        long = client.get("/operations/kinds/" + "x" * 5000)
        assert long.status_code == 404 and len(long.content) < 600  # what was sent, cut short


def test_a_second_app_in_the_process_leaves_the_first_ones_monitor_and_log_capture(
        web: TestClient[Any], tmp_path) -> None:
    """Tests (and tools embedding the app) may run a second app in one process: its end must
    not stop the first's health, metrics or log capture."""
    from tests.inprocess import app_client

    with app_client(tmp_path) as other:
        assert other.get("/api/health").status_code in (200, 503)
    logging.getLogger("marketdesk.test.ops").warning("after the second app ended")
    r = web.get("/api/logs", params={"logger": "marketdesk.test.ops"})
    assert r.status_code == 200, r.text
    assert "after the second app ended" in [line["message"] for line in r.json()["lines"]]
    assert web.get("/api/health").status_code in (200, 503)
    assert web.get("/metrics").status_code == 200


def test_an_app_that_began_first_and_ended_first_leaves_the_later_ones_log_capture(tmp_path) -> None:
    """The app that attached the log capture is not always the last to end (a module's app
    started before the session's, in tests; a tool's first panel closed before its second)."""
    from tests.inprocess import app_client

    with contextlib.ExitStack() as later:
        with contextlib.ExitStack() as earlier:
            first = earlier.enter_context(app_client(tmp_path / "first"))
            second = later.enter_context(app_client(tmp_path / "second"))
            assert first.get("/api/health").status_code in (200, 503)
        # the first has ended; the second runs on
        logging.getLogger("marketdesk.test.ops").warning("after the first app ended")
        r = second.get("/api/logs", params={"logger": "marketdesk.test.ops"})
        assert r.status_code == 200, r.text
        assert "after the first app ended" in [line["message"] for line in r.json()["lines"]]


def test_the_loop_lag_tells_a_blocked_loop_from_one_waiting_for_a_cpu(web: TestClient[Any]) -> None:
    """A blocking call in the loop is the loop's own lag; time its thread spent waiting for a
    CPU (other processes on a busy machine) is lag, but not its own."""
    import time

    from web import ops as web_ops

    mon = web_ops.monitor()
    assert mon.cpu_waited is not None and mon.cpu_waited() is not None  # Linux says

    def probes(n: int, after: Any = None) -> None:
        mon.lags.clear()
        mon.own_lags.clear()
        if after is not None:
            web.blocking_portal.call(after)  # in the app's loop, while a probe sleeps
        deadline = time.monotonic() + 5
        while len(mon.own_lags) < n and time.monotonic() < deadline:
            time.sleep(0.02)

    def lag_after(block: Any) -> dict[str, Any]:
        probes(1)  # a whole probe with the reader as it is now: the next began with it too
        probes(2, after=block)
        return mon.lag_stats()

    async def blocking_call() -> None:
        time.sleep(0.4)  # noqa: ASYNC251 - the blocking call the monitor must see
    # 0.4 s of block less at most the 0.1 s the probe had still to sleep
    stats = lag_after(blocking_call)
    assert stats["max_ms"] >= 280 and stats["own_max_ms"] >= 280, stats

    real, waited = mon.cpu_waited, [0.0]
    mon.cpu_waited = lambda: waited[0]

    async def starved() -> None:  # as the kernel would tell it: the 400 ms went waiting for a CPU
        time.sleep(0.4)  # noqa: ASYNC251
        waited[0] += 400.0
    try:
        stats = lag_after(starved)
    finally:
        mon.cpu_waited = real
    assert stats["max_ms"] >= 280 and stats["own_max_ms"] < 100, stats
    # the health check after the probes above (every second) carries the figures
    deadline = time.monotonic() + 5
    while (mon.live.get("event_loop_lag", {}).get(mon.name, {}).get("own_max_ms") is None
           and time.monotonic() < deadline):
        time.sleep(0.05)
    lag = web.get("/api/health").json()["event_loop_lag"]
    assert all({"own_max_ms", "own_p99_ms"} <= set(figures) for figures in lag.values()), lag
    panel = web.get("/operations")
    assert 'data-testid="own-lag"' in panel.text
