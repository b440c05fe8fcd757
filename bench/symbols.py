"""Symbols: refresh-all over N tracked symbols with two years of stored bars (total time,
levels/s), and GET /api/symbols with N symbols under C concurrent keep-alive clients (p50/p99).

Starts the real `marketdesk serve` (tests.stack.Stack, SQLite, one worker, embedded Redis),
stores the bars and the tracked symbols straight into its database (the synthetic provider's
bars, so no download runs), then drives it over HTTP. The load generator shares the machine's
cores with the server; its CPU is shown beside the server's.

    uv run python bench/symbols.py                    # 500 symbols, 50 clients, 10 s
    uv run python bench/symbols.py --symbols 50 --duration 3
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from _common import CpuMeter, latency_cells, machine_line, md_table, run, run_with_stack, stack_processes
from request_path import RawClient, Result, load_wrk, virtual_client

from jobs.db import Database
from jobs.prices import store as prices_store
from jobs.prices.calendar import trading_days
from jobs.prices.providers import synthetic_bar
from jobs.symbols import store
from jobs.symbols.refresh import window
from tests.stack import Stack
from web.cli import default_web_processes


def names(n: int) -> list[str]:
    return [f"S{i:03d}" for i in range(n)]


async def seed(url: str, symbols: list[str]) -> int:
    start, end = window()
    days = trading_days(start, end)
    db = Database(url)
    try:
        for symbol in symbols:
            await prices_store.save_bars(db, [synthetic_bar(symbol, d) for d in days], "synthetic")
            await store.add_symbol(db, symbol)
    finally:
        await db.dispose()
    return len(days)


def refresh_all(stack: Stack) -> dict[str, object]:
    r = httpx.post(f"{stack.url}/api/symbols/refresh", timeout=10)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    t0 = time.perf_counter()
    job = stack.wait(job_id, timeout=1800)
    wall = time.perf_counter() - t0
    run_s = (datetime.fromisoformat(job["finished_at"])
             - datetime.fromisoformat(job["started_at"])).total_seconds()
    return {"job": job, "wall": wall, "run": run_s}


async def get_load(stack: Stack, clients: int, duration: float, warmup: float,
                   meter: CpuMeter, rate: float | None) -> Result:
    """Closed loop (each client sends its next request when answered), or with ``rate`` an
    open loop at that many requests a second over all clients (latency from the due time)."""
    conns = [RawClient("127.0.0.1", stack.port) for _ in range(clients)]
    interval = clients / rate if rate else None

    async def phase(result: Result, seconds: float) -> None:
        start = time.perf_counter()
        await asyncio.gather(*(virtual_client(
            c, "GET", "/api/symbols", None, {200}, result, start, start + seconds, interval,
            (i * interval / clients) if interval else 0, [10**9]) for i, c in enumerate(conns)))
        result.duration = time.perf_counter() - start

    try:
        await phase(Result("warm-up", "raw"), warmup)
        result = Result("GET /api/symbols", "raw")
        meter.start()
        await phase(result, duration)
        result.cpu = meter.stop()
        return result
    finally:
        for c in conns:
            await c.close()


def get_rows(stack: Stack, args: argparse.Namespace, label: str) -> list[list[object]]:
    procs = stack_processes(stack.proc.pid)  # type: ignore[union-attr]
    rows: list[list[object]] = []
    # wrk: as a script sends (identity), then as a browser, httpx or requests does (gzip)
    loads = ([("wrk", None, "identity"), ("wrk", None, "gzip")] if args.client == "wrk"
             else [("raw", None, "identity"), ("raw", args.rate, "identity")])
    for client, rate, encoding in loads:
        if client == "wrk":
            load = run(load_wrk(stack, "GET /api/symbols", "GET", "/api/symbols", None, {200},
                                args.clients, args.duration, args.warmup, CpuMeter(procs),
                                accept_encoding=encoding))
        else:
            load = run(get_load(stack, args.clients, args.duration, args.warmup, CpuMeter(procs),
                                rate))
        ok = load.statuses.get(200, 0)
        web_cpu = sum(v for k, v in load.cpu.items()
                      if k == "web (serve)" or k.startswith("marketdesk web"))
        rows.append([label, ("closed loop" if rate is None else f"open loop {rate:g}/s")
                     + f" ({client}, {args.web} web, {encoding})", ok,
                     load.errors, f"{ok / load.duration:.0f}",
                     *(load.cells or latency_cells(load.latencies)), f"{web_cpu:.1f}"])
        if load.error_samples:
            print("errors:", load.error_samples, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop requests/s")
    parser.add_argument("--client", choices=["raw", "wrk"], default="raw",
                        help="raw: this process, closed and open loop; wrk: closed loop by wrk")
    parser.add_argument("--web", type=int, default=default_web_processes(),
                        help="web processes (serve --web N; default: serve's default here)")
    parser.add_argument("--no-uncached", action="store_true", help="skip the built-every-time rows")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-symbols-"))
    symbols = names(args.symbols)
    rows: list[list[object]] = []
    env = {"MARKETDESK_MAX_QUEUED": "1000"}
    cached = Stack(data_dir, env=env, web=args.web)

    def refresh_and_list() -> None:
        t0 = time.perf_counter()
        days = run(seed(f"sqlite:///{data_dir / 'marketdesk.db'}", symbols))
        print(f"# stored {len(symbols)} symbols × {days} days of bars in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        procs = stack_processes(cached.proc.pid)  # type: ignore[union-attr]
        meter = CpuMeter(procs)
        meter.start()
        done = refresh_all(cached)
        cpu = meter.stop()
        job = done["job"]
        result = job["result"]  # type: ignore[index]
        levels = result["levels_extracted"]
        print()
        print(machine_line())
        print(f"\n## Refresh all: {len(symbols)} symbols, {days} daily bars each (SQLite, 1 worker)\n")
        print(md_table(["symbols", "status", "failed", "levels", "run (s)", "submit→end (s)",
                        "levels/s", "symbols/s", "CPU (s)"], [[
            len(symbols), job["status"], len(result["failed"]), levels,  # type: ignore[index]
            f"{done['run']:.2f}", f"{done['wall']:.2f}", f"{levels / done['run']:.0f}",  # type: ignore[operator]
            f"{len(symbols) / done['run']:.1f}",  # type: ignore[operator]
            ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())]]), flush=True)
        rows.extend(get_rows(cached, args, "cached body (default)"))

    run_with_stack(cached, refresh_and_list)
    if not args.no_uncached:
        uncached = Stack(data_dir, env={**env, "MARKETDESK_SYMBOL_LIST_CACHE": "0"}, web=args.web)
        run_with_stack(uncached, lambda: rows.extend(get_rows(uncached, args, "built every time")))
    print(f"\n## GET /api/symbols: {len(symbols)} symbols, {args.clients} keep-alive clients, "
          f"{args.duration:g} s each\n")
    print(md_table(["body", "load", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms",
                    "max ms", "web CPU (s)"], rows))


if __name__ == "__main__":
    main()
