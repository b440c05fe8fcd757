"""Operations: /api/health/history over 90 days of samples, and what the /metrics middleware
costs on the request path.

1. History: a real `marketdesk serve` whose database holds what 90 days of sampling leaves
   (hourly rows, then a sample every 30 s for the last 25 hours: what retention and
   downsampling keep), and sequential GET /api/health/history?window=1h|24h|30d.
2. Instrumentation: GET /api/jobs/{id} (a cheap route through the database) under N concurrent
   keep-alive clients, on a stack with the HTTP metrics middleware and on one without
   (MARKETDESK_HTTP_METRICS=0), rounds alternated; p50 compared. The middleware's own cost per
   request is also timed in-process on a trivial ASGI app. The web process's event-loop lag
   (its monitor's p99 and max over the last minute) is read after each loaded round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
from _common import latency_cells, machine_line, md_table, percentile

from jobs.db import Database, utcnow
from jobs.ops.health import history, samples_between
from tests.ops.samples import generate_steady_state
from tests.stack import Stack


def load_line() -> str:
    return "load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg())


async def seed(url: str) -> int:
    db = Database(url)
    try:
        await generate_steady_state(db, utcnow(), retention_days=90, raw_hours=25, every_seconds=30)
        return len(await samples_between(db, utcnow() - timedelta(days=91), utcnow(),
                                         with_data=False))
    finally:
        await db.dispose()


async def uncached(url: str, n: int) -> list[list[object]]:
    """history() itself, every call computed (no cache): wall and CPU per call."""
    db = Database(url)
    rows: list[list[object]] = []
    try:
        for window in ("1h", "24h", "30d"):
            await history(db, window)
            lat, cpu = [], []
            for _ in range(n):
                began, cpu0 = time.perf_counter(), time.process_time()
                await history(db, window)
                lat.append(time.perf_counter() - began)
                cpu.append(time.process_time() - cpu0)
            rows.append([window, n, *latency_cells(lat), f"{percentile(cpu, 50) * 1000:.1f}",
                         "yes" if percentile(lat, 99) < 0.050 else "NO"])
    finally:
        await db.dispose()
    return rows


def bench_history(root: Path, n: int) -> str:
    # the sampler would add its own rows: sample rarely, so the table is what we seeded
    env = {"MARKETDESK_HEALTH_SAMPLE_SECONDS": "3600"}
    stack = Stack(root / "history", env=env)
    stack.start()
    try:
        url = f"sqlite:///{(root / 'history' / 'marketdesk.db').resolve()}"
        rows_held = asyncio.run(seed(url))
        out = []
        with httpx.Client(base_url=stack.url, timeout=10) as client:
            for window in ("1h", "24h", "30d"):
                for _ in range(5):  # warm
                    client.get("/api/health/history", params={"window": window})
                lat = []
                points = 0
                for _ in range(n):
                    began = time.perf_counter()
                    r = client.get("/api/health/history", params={"window": window})
                    lat.append(time.perf_counter() - began)
                    assert r.status_code == 200, r.text
                    points = len(r.json()["points"])
                p99 = percentile(lat, 99)
                out.append([window, n, points, *latency_cells(lat),
                            "yes" if p99 < 0.050 else "NO"])
        computed = asyncio.run(uncached(url, max(20, n // 4)))
        return (f"samples held: {rows_held} (90 days: hourly rows, then every 30 s for 25 h)\n\n"
                "GET /api/health/history over HTTP, sequential (as a page or a scraper sees it: "
                "computed once per new sample, then served from the ops.history cache)\n\n"
                + md_table(["window", "requests", "points", "p50 ms", "p95 ms", "p99 ms", "max ms",
                            "p99 < 50 ms"], out)
                + "\n\nhistory() computed on every call (no cache), in-process on the same "
                "database: wall time and CPU per call\n\n"
                + md_table(["window", "calls", "p50 ms", "p95 ms", "p99 ms", "max ms", "CPU p50 ms",
                            "p99 < 50 ms"], computed))
    finally:
        stack.stop()


async def _load(url: str, path: str, clients: int, seconds: float) -> list[float]:
    lat: list[float] = []
    stop_at = time.monotonic() + seconds

    async def one() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            while time.monotonic() < stop_at:
                began = time.perf_counter()
                r = await client.get(path)
                lat.append(time.perf_counter() - began)
                assert r.status_code == 200, r.text

    await asyncio.gather(*(one() for _ in range(clients)))
    return lat


def bench_overhead(root: Path, clients: int, seconds: float, rounds: int) -> str:
    stacks = {"with metrics": Stack(root / "on", env={}),
              "without": Stack(root / "off", env={"MARKETDESK_HTTP_METRICS": "0"})}
    for s in stacks.values():
        s.start()
    try:
        paths = {}
        for name, s in stacks.items():
            job = s.submit("prices.download", symbols=["AAPL"], start_date="2025-01-02",
                           end_date="2025-01-10")
            s.wait(job)
            paths[name] = f"/api/jobs/{job}"
        lat: dict[str, list[float]] = {name: [] for name in stacks}
        lags: dict[str, list[tuple[float, float]]] = {name: [] for name in stacks}
        for _ in range(rounds):
            for name, s in stacks.items():
                lat[name] += asyncio.run(_load(s.url, paths[name], clients, seconds))
                health = httpx.get(f"{s.url}/api/health", timeout=10).json()
                mine = [v for k, v in health["event_loop_lag"].items() if k.startswith("web:")]
                if mine:
                    lags[name].append((mine[0]["p99_ms"], mine[0]["max_ms"]))
        rows = []
        for name in stacks:
            rows.append([name, len(lat[name]), f"{len(lat[name]) / (seconds * rounds):.0f}",
                         *latency_cells(lat[name]),
                         f"{max(p for p, _ in lags[name]):.1f}" if lags[name] else "—",
                         f"{max(m for _, m in lags[name]):.1f}" if lags[name] else "—"])
        p50_on = percentile(lat["with metrics"], 50)
        p50_off = percentile(lat["without"], 50)
        overhead = (p50_on - p50_off) / p50_off * 100
        return (md_table(["web", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
                          "loop lag p99 ms", "loop lag max ms"], rows)
                + f"\n\np50 overhead of the metrics middleware: {overhead:+.1f} % "
                f"(target < 5 %: {'yes' if overhead < 5 else 'NO'})")
    finally:
        for s in stacks.values():
            s.stop()


def bench_middleware_in_process(n: int) -> str:
    from web.ops import metrics_middleware

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message):  # type: ignore[no-untyped-def]
        return None

    async def receive():  # type: ignore[no-untyped-def]
        return {"type": "http.request"}

    wrapped = metrics_middleware(app)
    scope = {"type": "http", "method": "GET", "path": "/x", "path_template": "/bench/{id}"}

    async def timed(target) -> float:  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        for _ in range(n):
            await target(scope, receive, send)
        return (time.perf_counter() - began) / n

    async def both() -> tuple[float, float]:
        await timed(wrapped)
        return await timed(app), await timed(wrapped)

    bare, instrumented = asyncio.run(both())
    return (f"in-process, {n} calls: bare ASGI app {bare * 1e6:.2f} µs, with the metrics middleware "
            f"{instrumented * 1e6:.2f} µs: {(instrumented - bare) * 1e6:.2f} µs per request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="history requests per window")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0, help="per loaded round")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds per stack")
    parser.add_argument("--only", choices=["history", "overhead"], default=None)
    args = parser.parse_args()
    print(machine_line())
    print(load_line())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.only in (None, "history"):
            print("\n## /api/health/history over 90 days of samples\n")
            print(bench_history(root, args.requests))
        if args.only in (None, "overhead"):
            print("\n## /metrics instrumentation on the request path (GET /api/jobs/{id})\n")
            print(bench_overhead(root, args.clients, args.seconds, args.rounds))
            print()
            print(bench_middleware_in_process(20_000))
    print()
    print(load_line())


if __name__ == "__main__":
    main()
