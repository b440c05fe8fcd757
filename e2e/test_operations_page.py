"""Operations in the browser: the header badge on every open page follows Redis going down and
coming back; a worker's log line reaches /logs live (its API key masked); /operations shows
its charts with values on hover."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from e2e.helpers import assert_same_document, csp_violations, mark, wait_sse_open
from jobs.redis_embedded import EmbeddedRedis
from tests.fakes.alphavantage import FakeAlphaVantage
from tests.stack import Stack


@dataclass
class OpsDesk:
    stack: Stack
    redis: EmbeddedRedis
    av: FakeAlphaVantage


@pytest.fixture(scope="module")
def ops_desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsDesk]:
    """`marketdesk serve` on a Redis of our own (so the test can stop and restart it), with
    Alpha Vantage behind a loopback fake."""
    root = Path(tmp_path_factory.mktemp("e2e-ops"))
    redis = EmbeddedRedis(root / "redis")
    url = redis.start()
    with FakeAlphaVantage(symbols=("IBM",), api_key="E2E-AV-KEY-777") as av:
        env = {"MARKETDESK_REDIS_URL": url, "MARKETDESK_HEALTH_SAMPLE_SECONDS": "2",
               "MARKETDESK_HEARTBEAT_SECONDS": "0.5", "MARKETDESK_RECONCILE_SECONDS": "0.5",
               "MARKETDESK_ALPHAVANTAGE_URL": av.url, "MARKETDESK_ALPHAVANTAGE_API_KEY": av.api_key,
               "MARKETDESK_ALPHAVANTAGE_MIN_INTERVAL_SECONDS": "0"}
        stack = Stack(root / "desk", env=env)
        try:
            stack.start()
            yield OpsDesk(stack, redis, av)
        finally:
            stack.stop()
            redis.stop()


def test_the_badge_turns_red_on_every_open_page_when_redis_stops_and_green_when_it_returns(
        context: BrowserContext, ops_desk: OpsDesk) -> None:
    base = ops_desk.stack.url
    pages = []
    for path in ("/", "/jobs", "/operations", "/logs"):
        p = context.new_page()
        p.goto(base + path)
        wait_sse_open(p)
        expect(p.get_by_test_id("ops-badge")).to_have_attribute("data-status", "green")
        pages.append((p, mark(p)))

    ops_desk.redis.stop()
    try:
        for p, _ in pages:
            badge = p.get_by_test_id("ops-badge")
            expect(badge).to_have_attribute("data-status", "red", timeout=10_000)
            expect(badge).to_have_text("down")
            assert "Redis down" in (badge.get_attribute("title") or "")
    finally:
        ops_desk.redis.start()
    for p, token in pages:
        # green again once Redis answers and a worker heartbeats on it
        expect(p.get_by_test_id("ops-badge")).to_have_attribute("data-status", "green",
                                                                 timeout=20_000)
        assert_same_document(p, token)  # pushed live: no page was reloaded
        assert not csp_violations(p)


def test_a_worker_log_line_reaches_the_logs_page_live_masked(
        context: BrowserContext, ops_desk: OpsDesk) -> None:
    page = context.new_page()
    page.goto(ops_desk.stack.url + "/logs")
    wait_sse_open(page)
    token = mark(page)
    lines = page.get_by_test_id("log-lines")
    httpx_lines = lines.locator("[data-testid=log-line][data-logger=httpx]")
    already = httpx_lines.count()

    import httpx

    r = httpx.post(f"{ops_desk.stack.url}/api/prices/download", timeout=10, json={
        "symbols": ["IBM"], "start_date": "2025-04-01", "end_date": "2025-04-15",
        "provider": "alphavantage"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    expect(httpx_lines).to_have_count(already + 1, timeout=15_000)
    newest = httpx_lines.last
    expect(newest).to_contain_text("apikey=***")
    assert ops_desk.av.api_key not in lines.inner_text()
    assert "worker:" in newest.inner_text()  # shipped from the worker process
    # the job's own lines arrive too, linked to it
    expect(lines.locator(f"[data-job='{job_id}']").first).to_be_visible()
    assert_same_document(page, token)
    assert not csp_violations(page)


def test_log_filters_apply_to_live_lines_and_scrolling_up_pauses(
        context: BrowserContext, ops_desk: OpsDesk) -> None:
    import httpx

    page = context.new_page()
    page.goto(ops_desk.stack.url + "/logs?logger=marketdesk.job")
    wait_sse_open(page)
    lines = page.get_by_test_id("log-lines")
    r = httpx.post(f"{ops_desk.stack.url}/api/prices/download", timeout=10, json={
        "symbols": ["IBM"], "start_date": "2025-05-01", "end_date": "2025-05-15",
        "provider": "alphavantage"})
    job_id = r.json()["job_id"]
    expect(lines.locator(f"[data-job='{job_id}']").first).to_be_visible()
    # lines of other loggers are filtered out live, as on the page
    assert lines.locator("[data-logger=httpx]").count() == 0

    # fill the list past its height, then scroll up: new lines wait, counted
    page.evaluate("""() => { const box = document.getElementById('log-lines');
        for (let i = 0; i < 80; i++) { const li = document.createElement('li');
          li.textContent = 'filler ' + i; box.appendChild(li); }
        box.scrollTop = 0; box.dispatchEvent(new Event('scroll')); }""")
    expect(page.get_by_test_id("log-paused")).to_be_visible()
    shown = lines.locator("[data-testid=log-line]").count()
    r = httpx.post(f"{ops_desk.stack.url}/api/prices/download", timeout=10, json={
        "symbols": ["IBM"], "start_date": "2025-06-02", "end_date": "2025-06-13",
        "provider": "alphavantage"})
    second = r.json()["job_id"]
    expect(page.get_by_test_id("log-held")).not_to_have_text("0", timeout=15_000)
    assert lines.locator(f"[data-job='{second}']").count() == 0
    assert lines.locator("[data-testid=log-line]").count() == shown
    page.get_by_role("button", name="Resume").click()
    expect(lines.locator(f"[data-job='{second}']").first).to_be_attached()
    expect(page.get_by_test_id("log-paused")).to_be_hidden()


def test_the_operations_page_charts_show_values_on_hover(
        context: BrowserContext, ops_desk: OpsDesk) -> None:
    page = context.new_page()
    page.goto(ops_desk.stack.url + "/operations")
    wait_sse_open(page)
    token = mark(page)
    chart = page.get_by_test_id("chart-db_ms")
    # samples arrive every 2 s: the panel is re-rendered live as they come
    latest = page.get_by_test_id("latest-sample")
    shown = latest.inner_text()
    expect(latest).not_to_have_text(shown, timeout=15_000)
    expect(chart.locator("circle").first).to_be_attached(timeout=15_000)
    title = chart.locator("circle title").first.text_content() or ""
    assert "UTC:" in title and "ms" in title, title
    expect(page.get_by_test_id("workers-alive")).not_to_have_text("0")
    assert_same_document(page, token)
    assert not csp_violations(page)
