"""Event to screen: from a job's change to the changed text in a real browser's DOM.

Starts the real `marketdesk serve` (one worker, one job at a time) and opens a job page in
headless Chromium (Playwright). A MutationObserver in the page records the wall-clock time
(performance.timeOrigin + performance.now(), the same machine clock as Python's time.time())
whenever the job's progress text changes, the time the SSE message reached htmx just before
the swap, and the next animation frame after the change. Two sources of changes:

* worker — a real ``diagnostics.sleep`` job of N steps: each step is an UPDATE + COMMIT by the
  worker, then an XADD. The change's start time is its stream id (Redis's clock, in ms, taken
  at the XADD right after the commit), learned from a JSON SSE subscriber on the same job.
* bus — this script XADDs N job events with jobs.events.EventBus into the same Redis, noting
  time.time() just before each XADD: the web path alone, without the worker and the database.
* bare — the same XADDs read by a bare server started here (Litestar + sse-starlette, one
  blocking XREAD loop per connection, the progress text formatted inline; no hub, no regions,
  no templates) and swapped by the same htmx and SSE extension: the floor of the stack,
  measured in the same run on the same machine.

Latency = DOM change time − start time, per change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _common import (
    latency_cells,
    machine_line,
    md_table,
    percentile,
    run,
    run_with_stack,
    sigterm_as_exit,
    wait_answers,
)
from sse_starlette import EventSourceResponse, ServerSentEvent

from tests.stack import TERMINAL, Stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

OBSERVER_JS = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const bench = window.__bench = {changes: [], sseOpen: false, lastMsg: null, ready: false};
  document.addEventListener('htmx:sseOpen', () => { bench.sseOpen = true; }, true);
  document.addEventListener('htmx:sseBeforeMessage', (e) => {
    const ev = e.detail;
    if (ev && ev.type === 'job-detail') bench.lastMsg = {t: now(), id: ev.lastEventId};
  }, true);
  const read = () => {
    const p = document.querySelector('[data-testid=progress-text]');
    const ph = document.querySelector('[data-testid=phase]');
    return p ? p.textContent.trim() + '|' + (ph ? ph.textContent.trim() : '') : null;
  };
  let last = null;
  const start = () => {
    last = read();
    new MutationObserver(() => {
      const t = now();
      const text = read();
      if (text === null || text === last) return;
      last = text;
      const rec = {text: text, dom: t, msg: bench.lastMsg, frame: null};
      bench.changes.push(rec);
      requestAnimationFrame(() => { rec.frame = now(); });
    }).observe(document.body, {childList: true, subtree: true, characterData: true});
    bench.ready = true;
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
"""


def text_key(job: dict[str, Any]) -> str:
    p = job["progress"]
    return f"{p['done']}/{p['total']}|{(p.get('phase') or '').strip()}"


def stream_ms(entry_id: str) -> float:
    return float(entry_id.split("-", 1)[0])


async def follow_json(stack: Stack, job_id: str, starts: dict[str, float], done: asyncio.Event,
                      limit_s: float) -> None:
    """Map each state's progress text to the stream id (ms) of the first event that showed it."""
    url = f"{stack.url}/events?topic=job:{job_id}&format=json"
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=limit_s)) as client:
        async with client.stream("GET", url) as resp:
            event: dict[str, str] = {}
            async for line in resp.aiter_lines():
                if time.monotonic() > deadline:
                    return
                if line:
                    key, _, value = line.partition(":")
                    event[key] = value[1:] if value.startswith(" ") else value
                    continue
                if event.get("event") == "job" and "id" in event:
                    job = json.loads(event["data"])
                    starts.setdefault(text_key(job), stream_ms(event["id"]))
                    if job["status"] in TERMINAL:
                        done.set()
                        return
                event = {}


async def open_job_page(browser: Any, stack: Stack, job_id: str) -> Any:
    page = await browser.new_page()
    await page.add_init_script(OBSERVER_JS)
    await page.goto(f"{stack.url}/jobs/{job_id}", wait_until="load")
    await page.wait_for_function("window.__bench && window.__bench.ready && window.__bench.sseOpen",
                                 timeout=15_000)
    return page


async def collect(page: Any) -> list[dict[str, Any]]:
    await asyncio.sleep(0.1)  # let the last requestAnimationFrame callbacks run
    return list(await page.evaluate("window.__bench.changes.splice(0)"))


def latencies(changes: list[dict[str, Any]], starts: dict[str, float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"total": [], "to_page": [], "swap": [], "frame": []}
    for c in changes:
        t0 = starts.get(c["text"])
        if t0 is None:
            continue
        out["total"].append((c["dom"] - t0) / 1000)
        if c.get("msg"):
            out["to_page"].append((c["msg"]["t"] - t0) / 1000)
            out["swap"].append((c["dom"] - c["msg"]["t"]) / 1000)
        if c.get("frame"):
            out["frame"].append((c["frame"] - c["dom"]) / 1000)
    return out


async def worker_source(browser: Any, stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    # one job at a time: a blocker holds the worker while the page and the subscriber connect
    stack.submit("diagnostics.sleep", steps=1, step_seconds=args.hold)
    job_id = stack.submit("diagnostics.sleep", steps=args.changes, step_seconds=args.step)
    starts: dict[str, float] = {}
    done = asyncio.Event()
    timeout = args.hold + args.changes * (args.step + 0.5) + 30
    follower = asyncio.create_task(follow_json(stack, job_id, starts, done, timeout))
    page = await open_job_page(browser, stack, job_id)
    try:
        state = stack.job(job_id)["status"]
        if state != "pending":
            print(f"# warning: the job was already {state} when the page was ready; raise --hold",
                  flush=True)
        await asyncio.wait_for(done.wait(), timeout)
        changes = await collect(page)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await page.close()
    return {"job_id": job_id, "changes": changes, "lat": latencies(changes, starts)}


async def bus_source(browser: Any, stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from jobs.engine import redis_client
    from jobs.events import EventBus, job_topics

    job_id = stack.submit("diagnostics.sleep", steps=1, step_seconds=0)
    stack.wait(job_id)
    payload = stack.job(job_id)
    payload.pop("log", None)
    page = await open_job_page(browser, stack, job_id)
    redis = redis_client(f"unix://{(stack.data_dir / 'redis.sock').resolve()}")
    starts: dict[str, float] = {}
    try:
        bus = EventBus(redis)
        begin = time.monotonic()
        for i in range(1, args.changes + 1):
            await asyncio.sleep(max(0.0, begin + i * args.step - time.monotonic()))
            data = json.loads(json.dumps(payload))
            data["progress"].update({"done": i, "total": args.changes, "phase": f"bus event {i}"})
            starts[text_key(data)] = time.time() * 1000
            await bus.publish("job", job_topics(job_id), data)
        last = text_key(data)
        await page.wait_for_function(
            "(t) => window.__bench.changes.some(c => c.text === t)", arg=last, timeout=10_000)
        changes = await collect(page)
    finally:
        await redis.aclose()
        await page.close()
    return {"job_id": job_id, "changes": changes, "lat": latencies(changes, starts)}


BARE_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script src="/static/htmx.min.js"></script><script src="/static/sse.js"></script></head>
<body><main hx-ext="sse" sse-connect="/sse"><div sse-swap="job-detail" hx-swap="innerHTML">
<span data-testid="progress-text">0/0</span>|<span data-testid="phase"></span></div></main>
</body></html>"""


def bare_server(port: int, redis_url: str) -> None:
    """The floor: XREAD → SSE → htmx swap, nothing else (run in a child process)."""
    import html

    import uvicorn
    from litestar import Litestar, MediaType, get
    from litestar.static_files import create_static_files_router

    from jobs.engine import redis_client
    from jobs.events import read_after
    from web.render import STATIC_DIR

    @get("/", media_type=MediaType.HTML, sync_to_thread=False)
    def index() -> str:
        return BARE_PAGE

    @get("/sse")
    async def sse() -> EventSourceResponse:
        async def stream() -> Any:
            redis = redis_client(redis_url, socket_timeout=None)
            position = "$"
            try:
                while True:
                    for event in await read_after(redis, position, block_ms=5000):
                        position = event.id
                        p = event.data.get("progress") or {}
                        yield ServerSentEvent(event="job-detail", id=event.id, data=(
                            f'<span data-testid="progress-text">{p.get("done")}/{p.get("total")}'
                            f'</span>|<span data-testid="phase">{html.escape(p.get("phase") or "")}'
                            "</span>"))
            finally:
                await redis.aclose()
        return EventSourceResponse(stream())

    app = Litestar([index, sse, create_static_files_router(path="/static", directories=[STATIC_DIR])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop",
                http="httptools")


def start_bare(port: int, redis_url: str) -> Any:
    """The bare server in a child process, once it answers."""
    import subprocess

    proc = subprocess.Popen([sys.executable, __file__, "--bare-server", str(port), redis_url])
    wait_answers(f"http://127.0.0.1:{port}/")
    return proc


async def bare_source(browser: Any, stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    from jobs.engine import redis_client
    from jobs.events import EventBus
    from tests.stack import free_port

    port = free_port()
    redis_url = f"unix://{(stack.data_dir / 'redis.sock').resolve()}"
    proc = await asyncio.to_thread(start_bare, port, redis_url)
    redis = redis_client(redis_url)
    starts: dict[str, float] = {}
    page = None
    try:
        page = await browser.new_page()
        await page.add_init_script(OBSERVER_JS)
        await page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
        await page.wait_for_function("window.__bench && window.__bench.ready && window.__bench.sseOpen",
                                     timeout=15_000)
        bus = EventBus(redis)
        begin = time.monotonic()
        data: dict[str, Any] = {}
        for i in range(1, args.changes + 1):
            await asyncio.sleep(max(0.0, begin + i * args.step - time.monotonic()))
            data = {"progress": {"done": i, "total": args.changes, "phase": f"bare event {i}"}}
            starts[text_key(data)] = time.time() * 1000
            await bus.publish("job", ("bare",), data)
        last = text_key(data)
        await page.wait_for_function(
            "(t) => window.__bench.changes.some(c => c.text === t)", arg=last, timeout=10_000)
        changes = await collect(page)
    finally:
        if page is not None:
            await page.close()
        await redis.aclose()
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)
    return {"job_id": None, "changes": changes, "lat": latencies(changes, starts)}


async def bench(stack: Stack, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from playwright.async_api import async_playwright

    results: dict[str, dict[str, Any]] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for source in args.sources:
                fn = {"worker": worker_source, "bus": bus_source, "bare": bare_source}[source]
                results[source] = await fn(browser, stack, args)
                print(f"# {source}: {len(results[source]['lat']['total'])} changes measured", flush=True)
        finally:
            await browser.close()
    return results


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\n## Event to screen: job page in headless Chromium, {args.changes} changes "
          f"{args.step * 1000:g} ms apart per source\n")
    print(machine_line() + f"; load average now: {os.getloadavg()[0]:.2f}")
    print("stack: `marketdesk serve`, 1 worker (max 1 job), embedded Redis, SQLite; Chromium "
          "headless, same machine and clock\n")
    names = {"worker": "worker commit (stream id of its XADD) → DOM text changed",
             "bus": "XADD by this script → DOM text changed",
             "bare": "the floor: XADD → a bare XREAD/SSE server → htmx swap"}
    rows = []
    for source, r in results.items():
        lat = r["lat"]
        rows.append([names[source], len(lat["total"]), *latency_cells(lat["total"])])
    print(md_table(["path", "changes", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows))
    print("\nwhere the time goes (per change):\n")
    rows = []
    for source, r in results.items():
        lat = r["lat"]
        rows += [[source, "start → SSE message in the page (server + network + EventSource)",
                  *latency_cells(lat["to_page"])],
                 [source, "message → DOM changed (htmx swap)", *latency_cells(lat["swap"])],
                 [source, "DOM changed → next animation frame", *latency_cells(lat["frame"])]]
    print(md_table(["source", "segment", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows))
    floor = results.get("bare", {}).get("lat", {}).get("total")
    floor95 = percentile(floor, 95) if floor else None
    print("\nfor comparison: polling every 2 s (the issue's figure) has p95 1950 ms\n")
    for source, r in results.items():
        lat = r["lat"]["total"]
        if len(lat) < args.changes:
            print(f"{source}: {args.changes - len(lat)} of {args.changes} changes were not seen "
                  "(coalesced or missed)")
        if not lat or source == "bare":
            continue
        p95 = percentile(lat, 95)
        if floor95:
            verdict = "meets" if p95 < 2 * floor95 else "misses"
            print(f"{source}: p95 {p95 * 1000:.1f} ms = {p95 / floor95:.2f} × the floor's "
                  f"{floor95 * 1000:.1f} ms (target < 2×) — {verdict} it")
        else:
            print(f"{source}: p95 {p95 * 1000:.1f} ms (run --sources bare too for the target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=120, help="changes per source (default 120)")
    parser.add_argument("--step", type=float, default=0.05, help="seconds between changes")
    parser.add_argument("--hold", type=float, default=4.0,
                        help="worker source: seconds a blocker job holds the worker while the page opens")
    parser.add_argument("--sources", nargs="+", choices=["worker", "bus", "bare"],
                        default=["worker", "bus", "bare"])
    parser.add_argument("--bare-server", nargs=2, metavar=("PORT", "REDIS_URL"), default=None,
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(int(args.bare_server[0]), args.bare_server[1])
        return
    sigterm_as_exit()
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="bench-screen-") as tmp:
        stack = Stack(Path(tmp), workers=1, max_jobs=1)
        run_with_stack(stack, lambda: report(run(bench(stack, args)), args), "")


if __name__ == "__main__":
    main()
