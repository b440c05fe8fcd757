"""With real workers: one health sample per period whatever the number of workers, /metrics
counting a finished job, a worker's log lines reaching the web masked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.alphavantage import FakeAlphaVantage
from tests.stack import Stack

SAMPLE_SECONDS = 1.0


@pytest.fixture(scope="module")
def av() -> Iterator[FakeAlphaVantage]:
    with FakeAlphaVantage(symbols=("IBM",), api_key="AVKEY-SHOULD-NOT-LEAK") as fake:
        yield fake


@pytest.fixture(scope="module")
def two_workers(database: str, av: FakeAlphaVantage,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"MARKETDESK_HEALTH_SAMPLE_SECONDS": str(SAMPLE_SECONDS),
           "MARKETDESK_HEARTBEAT_SECONDS": "0.5", "MARKETDESK_RECONCILE_SECONDS": "0.5",
           "MARKETDESK_ALPHAVANTAGE_URL": av.url, "MARKETDESK_ALPHAVANTAGE_API_KEY": av.api_key,
           "MARKETDESK_ALPHAVANTAGE_MIN_INTERVAL_SECONDS": "0"}
    with Stack(Path(tmp_path_factory.mktemp(f"ops-{database}")), workers=2, env=env,
               database=database) as stack:
        yield stack


def samples(stack: Stack) -> list[dict[str, Any]]:
    r = httpx.get(f"{stack.url}/api/health/history", params={"window": "1h"}, timeout=10)
    assert r.status_code == 200
    return r.json()["points"]


def test_two_workers_take_one_sample_per_period(two_workers: Stack) -> None:
    # the live check is at most a check period (1 s) old
    deadline = time.monotonic() + 3
    while True:
        health = httpx.get(f"{two_workers.url}/api/health", timeout=10).json()
        if health["workers"]["alive"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert health["workers"]["alive"] == 2, health
    first = health["latest_sample"]
    time.sleep(6 * SAMPLE_SECONDS)
    # the raw samples themselves: read them through the latest one, one at a time
    seen: list[datetime] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        latest = httpx.get(f"{two_workers.url}/api/health", timeout=10).json()["latest_sample"]
        at = datetime.fromisoformat(latest["at"])
        if not seen or at != seen[-1]:
            seen.append(at)
        time.sleep(0.1)
    summary = httpx.get(f"{two_workers.url}/api/health/history", params={"window": "1h"},
                        timeout=10).json()["summary"]
    started = datetime.fromisoformat(first["at"]) if first else None
    assert started is not None
    span = (datetime.fromisoformat(latest["at"]) - started).total_seconds()
    # two workers, each trying every period: still one sample per period, not two
    assert summary["samples"] <= span / SAMPLE_SECONDS + 3, (summary, span)
    assert summary["samples"] >= 4
    gaps = [(b - a).total_seconds() for a, b in zip(seen, seen[1:], strict=False)]
    assert all(g >= SAMPLE_SECONDS * 0.8 for g in gaps), gaps
    assert latest["workers"] == 2


def test_metrics_count_a_finished_job(two_workers: Stack) -> None:
    def finished() -> float:
        text = httpx.get(f"{two_workers.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name == "marketdesk_jobs_finished":
                return sum(s.value for s in family.samples
                           if s.labels == {"kind": "prices.download", "status": "completed"})
        return 0.0

    before = finished()
    job_id = two_workers.submit("prices.download", symbols=["MSFT"], start_date="2025-02-03",
                                end_date="2025-02-14")
    assert two_workers.wait(job_id)["status"] == "completed"
    assert finished() == before + 1
    # and its duration shows per kind once a sample has taken it in
    deadline = time.monotonic() + 5 * SAMPLE_SECONDS
    while True:
        families = {f.name: f for f in text_string_to_metric_families(
            httpx.get(f"{two_workers.url}/metrics", timeout=10).text)}
        durations = [s for s in families["marketdesk_job_duration_seconds"].samples
                     if s.labels["kind"] == "prices.download"]
        if durations or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert {s.labels["quantile"] for s in durations} == {"0.50", "0.95", "0.99"}


def test_a_worker_log_line_reaches_the_web_with_its_api_key_masked(
        two_workers: Stack, av: FakeAlphaVantage) -> None:
    job_id = two_workers.submit("prices.download", symbols=["IBM"], start_date="2025-03-03",
                                end_date="2025-03-14", provider="alphavantage")
    job = two_workers.wait(job_id)
    assert job["status"] == "completed", job
    assert av.requests  # the worker did call the provider, key and all
    deadline = time.monotonic() + 5
    while True:
        lines = httpx.get(f"{two_workers.url}/api/logs", params={"logger": "httpx"},
                          timeout=10).json()["lines"]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert lines, "no httpx line from the worker reached the web's log buffer"
    assert all(line["source"].startswith("worker:") for line in lines)
    assert any("apikey=***" in line["message"] for line in lines), lines
    assert not any(av.api_key in line["message"] for line in lines)
    # the job's own lines are there too, under its id
    own = httpx.get(f"{two_workers.url}/api/logs", params={"job": job_id}, timeout=10).json()["lines"]
    assert any("Finished" in line["message"] for line in own), own
    # nor does the key reach the stack's console output
    assert av.api_key not in two_workers.log_path.read_text(errors="replace")


def test_a_kind_page_shows_its_metrics_and_the_next_sample_updates_them_live(
        two_workers: Stack) -> None:
    """/prices carries prices.download's metrics panel; its live connection fills it at once
    and a sample taken after a download finished pushes the new count, with no reload."""
    import re

    from tests.stack import sse_events

    page = httpx.get(f"{two_workers.url}/prices", timeout=10).text
    topics = re.search(r'sse-connect="(/events\?[^"]*)"', page)
    assert topics and "topic=opskind:prices.download" in topics.group(1), page[:500]
    assert 'data-kind="prices.download"' in page
    url = two_workers.url + topics.group(1).replace("&amp;", "&")

    def finished_in(html: str) -> int:
        found = re.search(r'data-testid="kind-finished">(\d+)<', html)
        return int(found.group(1)) if found else 0

    with httpx.stream("GET", url, timeout=httpx.Timeout(5, read=15)) as r:
        events = sse_events(r)
        first = next(e for e in events if e.get("event") == "opskind-prices-download")
        assert 'data-testid="kind-metrics"' in first["data"]
        before = finished_in(first["data"])
        job_id = two_workers.submit("prices.download", symbols=["IBM"], start_date="2025-03-03",
                                    end_date="2025-03-07")
        assert two_workers.wait(job_id)["status"] == "completed"
        deadline = time.monotonic() + 10 * SAMPLE_SECONDS
        for event in events:
            if event.get("event") == "opskind-prices-download" and finished_in(event["data"]) > before:
                assert 'data-testid="chart-per_minute"' in event["data"]
                assert 'data-testid="chart-p95"' in event["data"]
                break
            assert time.monotonic() < deadline, "no sample pushed the finished download"
