"""The SSE stream: current state on connect, resume by Last-Event-ID, keep-alive, fan-out."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests.stack import Stack, sse_events
from web.events import id_key


def _stream(url: str, headers: dict[str, str] | None = None, read: float = 10):
    return httpx.stream("GET", url, headers=headers or {}, timeout=httpx.Timeout(5, read=read))


def test_unknown_topic_is_refused_naming_the_allowed_ones(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/events?topic=everything")
    assert r.status_code == 400
    assert "jobs" in r.json()["detail"] and "job:<job id>" in r.json()["detail"]
    assert httpx.get(f"{stack.url}/events").status_code == 400


def test_fresh_connect_first_sends_current_state(stack: Stack) -> None:
    job_id = stack.submit("diagnostics.sleep", steps=1, step_seconds=0.01)
    stack.wait(job_id)
    with _stream(f"{stack.url}/events?topic=job:{job_id}") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        first = next(e for e in sse_events(r) if "event" in e)
    assert first["event"] == "job-detail"
    assert 'data-status="completed"' in first["data"]
    assert first["id"]


def test_job_events_carry_rendered_rows_for_the_jobs_list(stack: Stack) -> None:
    with _stream(f"{stack.url}/events?topic=jobs") as r:
        events = sse_events(r)
        # the current state comes first; then submit and watch our row arrive
        job_id = None
        deadline = time.monotonic() + 10
        seen: dict[str, str] = {}
        for event in events:
            if job_id is None and event.get("event") == "overview":
                job_id = stack.submit("diagnostics.noop")
            if job_id and event.get("event") in (f"job-row-{job_id}", "job-new"):
                seen[event["event"]] = event["data"]
                if 'data-status="completed"' in event["data"]:
                    break
            assert time.monotonic() < deadline
    assert f'id="job-row-{job_id}"' in seen[f"job-row-{job_id}"]
    assert f'sse-swap="job-row-{job_id}"' in seen["job-new"]


def test_last_event_id_resumes_without_a_gap(stack: Stack) -> None:
    job_id = stack.submit("diagnostics.sleep", steps=8, step_seconds=0.25)
    url = f"{stack.url}/events?topic=job:{job_id}&format=json"
    seen_steps: list[int] = []
    with _stream(url) as r:
        first = next(e for e in sse_events(r) if e.get("event") == "job")
    last_id = first["id"]
    seen_steps.append(json.loads(first["data"])["progress"]["done"])
    time.sleep(1.0)  # disconnected while the job moves on
    with _stream(url, headers={"Last-Event-ID": last_id}) as r:
        for event in sse_events(r):
            if event.get("event") != "job":
                continue
            assert id_key(event["id"]) > id_key(last_id)
            state = json.loads(event["data"])
            seen_steps.append(state["progress"]["done"])
            if state["status"] == "completed":
                break
    steps = sorted(set(seen_steps))
    assert steps == list(range(steps[0], 9)), f"gap in resumed stream: {seen_steps}"
    assert steps[0] <= 1


def test_keepalive_comes_within_the_interval(make_stack) -> None:
    s = make_stack(workers=0, env={"MARKETDESK_SSE_KEEPALIVE_SECONDS": "1"})
    start = time.monotonic()
    with _stream(f"{s.url}/events?topic=prices") as r:
        for event in sse_events(r):
            if ":" in event:
                break
    assert time.monotonic() - start < 3


def test_too_slow_client_is_dropped_not_buffered() -> None:
    from web.events import CLOSE, Client

    async def scenario() -> list[object]:
        client = Client(frozenset({"jobs"}), asyncio.Queue(maxsize=3))
        for i in range(10):
            client.offer((f"{i}-0", [("x", "y")]))
        assert client.overflowed
        items = []
        while not client.queue.empty():
            items.append(client.queue.get_nowait())
        return items

    items = asyncio.run(scenario())
    assert len(items) == 3  # memory stays bounded by the queue size
    assert items[-1] is CLOSE  # and the stream ends, so the browser reconnects and resumes


def test_embedded_panels_get_fragments_whose_links_stay_embedded(stack: Stack) -> None:
    job_id = stack.submit("diagnostics.noop")
    stack.wait(job_id)
    with _stream(f"{stack.url}/events?topic=jobs&embed=1") as r:
        row = next(e for e in sse_events(r) if e.get("event") == f"job-row-{job_id}")
    assert f'href="/jobs/{job_id}?embed=1"' in row["data"]
    with _stream(f"{stack.url}/events?topic=jobs") as r:
        row = next(e for e in sse_events(r) if e.get("event") == f"job-row-{job_id}")
    assert f'href="/jobs/{job_id}"' in row["data"]


def test_an_older_job_state_never_overwrites_a_newer_one() -> None:
    from jobs.events import Event
    from web.events import Hub

    hub = Hub(engine=None)  # type: ignore[arg-type]

    def state(entry: str, status: str, updated: str) -> Event:
        return Event(entry, "job", ("jobs",), {"id": "j1", "status": status, "updated_at": updated})

    assert not hub.is_stale(state("1-0", "running", "2026-01-01T10:00:00.000002+00:00"))
    assert not hub.is_stale(state("2-0", "cancelled", "2026-01-01T10:00:00.000005+00:00"))
    # the web's "cancel requested" (committed before the worker's "cancelled") arrives late
    assert hub.is_stale(state("3-0", "running", "2026-01-01T10:00:00.000003+00:00"))


def test_a_burst_of_job_events_renders_the_overview_a_few_times_with_the_final_counts(
        make_stack) -> None:
    s = make_stack(workers=0, env={"MARKETDESK_MAX_QUEUED": "1000"})
    with _stream(f"{s.url}/events?topic=jobs") as r:
        events = sse_events(r)
        first = next(e for e in events if e.get("event") == "overview")  # the state on connect
        assert 'data-testid="count-pending">0<' in first["data"]
        burst = time.monotonic()
        for _ in range(60):
            s.submit("diagnostics.noop")
        overviews, rows, started = [], 0, time.monotonic()
        for event in events:
            if event.get("event") == "job-new":
                rows += 1
            elif event.get("event") == "overview":
                overviews.append(event["data"])
                if 'data-testid="count-pending">60<' in event["data"]:
                    break
            assert time.monotonic() - started < 15, (rows, len(overviews))
    took = time.monotonic() - burst  # from the first job's event to the last overview
    assert rows == 60  # every job's row came, each in its own event
    # the overview did not follow each of them: at most one per coalescing period while they
    # came (the bound was a flat 20, which a loaded machine, submitting slower, exceeded)
    from web.events import COALESCE_SECONDS
    assert len(overviews) <= took / COALESCE_SECONDS + 2, (len(overviews), took)
    assert len(overviews) < rows, len(overviews)


def test_a_slow_region_delays_only_its_own_topic(monkeypatch) -> None:
    """Each topic renders in a lane of its own: a page whose region takes a second to render
    does not hold the events of every other page behind it."""
    import web.events as hub_module
    from jobs.events import Event
    from web.events import Hub
    from web.slice import Region

    async def slow(engine, topic, event):
        await asyncio.sleep(1.0)
        return [("slow", "s")]

    async def fast(engine, topic, event):
        return [("fast", "f")]

    regions = {"slow": [Region("slow", slow, follows=("x",))],
               "fast": [Region("fast", fast, follows=("x",))]}
    monkeypatch.setattr(hub_module, "regions_of", lambda prefix: regions.get(prefix, []))

    async def scenario() -> tuple[float, float]:
        hub = Hub(engine=None)  # type: ignore[arg-type]
        slow_client = hub.subscribe(frozenset({"slow"}))
        fast_client = hub.subscribe(frozenset({"fast"}))
        start = time.monotonic()
        hub.dispatch(Event("1-0", "x", ("slow", "fast"), {}))
        await asyncio.wait_for(fast_client.queue.get(), 5)
        fast_at = time.monotonic() - start
        await asyncio.wait_for(slow_client.queue.get(), 5)
        slow_at = time.monotonic() - start
        for _, task in hub._lanes.values():
            task.cancel()
        return fast_at, slow_at

    fast_at, slow_at = asyncio.run(scenario())
    assert fast_at < 0.2 and slow_at >= 1.0, (fast_at, slow_at)


def test_a_tool_following_two_topics_gets_each_event_once() -> None:
    from jobs.events import Event
    from web.events import Hub

    async def scenario() -> list[object]:
        hub = Hub(engine=None)  # type: ignore[arg-type]
        tool = hub.subscribe(frozenset({"jobs", "job:abc"}), as_json=True)
        hub.dispatch(Event("1-0", "job", ("jobs", "job:abc"), {"id": "abc", "updated_at": "x"}))
        items = []
        while not tool.queue.empty():
            items.append(tool.queue.get_nowait())
        return items

    items = asyncio.run(scenario())
    assert len(items) == 1, items
