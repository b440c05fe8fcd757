"""Contracts snapshot benchmark: builds on a big lake (cold, warm, one folder changed), the
cache-mode API under 50 concurrent clients on the big lake and on a tiny one, and the
/contracts page's server-side render with every contract.

    uv run python bench/contracts.py                      # 1,000 contracts x 1,000 days
    uv run python bench/contracts.py --contracts 200 --days 300 --duration 5   # quick

The lake (date folders only) is generated once into --lake-cache and reused. The builds run
in process against a fresh SQLite database (the one the stack then serves); the API rows run
against `marketdesk serve` (tests.stack.Stack) with raw keep-alive HTTP/1.1 clients.
Targets: warm >= 50x faster than cold; one-folder change <= 2x warm; API p99 < 20 ms and within
20% between the big and the tiny lake; the page < 100 ms server-side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import latency_cells, machine_line, md_table, ms, sigterm_as_exit  # noqa: E402
from request_path import RawClient, load_wrk  # noqa: E402

EXCHANGE, BIG, TINY = "SHFE", "bx", "tn"


def trading_days_back(n: int) -> list:
    from jobs.contracts import calendar
    from jobs.db import today_utc

    days, day = [], today_utc()
    while len(days) < n:
        day = calendar.last_trading_day_on_or_before(day - timedelta(days=1))
        days.append(day)
    return sorted(days)


def catalog_entries(var: str, contracts: int, days: list) -> list[dict]:
    return [{"symbol": f"{EXCHANGE}.{var}{i:04d}", "open_date": days[0].isoformat(),
             "expiry": days[-1].isoformat()} for i in range(contracts)]


def generate_lake(root: Path, var: str, contracts: int, days: list) -> float:
    """Date folders for every contract and day; seconds taken (0 when reused)."""
    marker = root / f".complete-{var}-{contracts}x{len(days)}"
    if marker.exists():
        return 0.0
    started = time.perf_counter()
    names = [f"date={d.isoformat()}" for d in days]
    for i in range(contracts):
        folder = root / f"symbol={EXCHANGE}.{var}{i:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            try:
                os.mkdir(folder / name)
            except FileExistsError:
                pass
    marker.write_text("ok")
    return time.perf_counter() - started


async def builds(db_url: str, settings, repeat: int) -> list[list[str]]:
    from jobs.contracts.build import build_snapshot
    from jobs.contracts.lake import symbol_dir, ticks_root
    from jobs.db import Database

    db = Database(db_url)
    rows = []
    try:
        async def one(label: str) -> dict:
            t = time.perf_counter()
            built = await build_snapshot(db, EXCHANGE, BIG, settings=settings)
            wall = time.perf_counter() - t
            s = built.summary
            return {"label": label, "wall": wall, "catalog": s["timings_ms"]["catalog"],
                    "local": s["timings_ms"]["local"], "hits": s["scan"]["cache_hits"],
                    "rescanned": s["scan"]["rescanned"]}

        cold = await one("cold (empty scan cache)")
        warm = [await one("warm (nothing changed)") for _ in range(repeat)]
        changed = []
        root = ticks_root(settings)
        from datetime import date
        for i in range(repeat):
            folder = symbol_dir(root, f"{EXCHANGE}.{BIG}{i:04d}")
            day = date(1991, 1, 1)
            while (folder / f"date={day.isoformat()}").exists():  # a new day on every run
                day += timedelta(days=1)
            (folder / f"date={day.isoformat()}").mkdir()
            changed.append(await one("one folder gained a day"))
        for group in ([cold], warm, changed):
            walls = [g["wall"] for g in group]
            g = group[len(group) // 2]
            rows.append([g["label"], f"{statistics.median(walls) * 1000:.1f}", g["catalog"], g["local"],
                         g["hits"], g["rescanned"]])
        w, c = statistics.median(x["wall"] for x in warm), statistics.median(x["wall"] for x in changed)
        rows.append(["cold / warm", f"{cold['wall'] / w:.0f}x (target >= 50x)", "", "", "", ""])
        rows.append(["one change / warm", f"{c / w:.2f}x (target <= 2x)", "", "", "", ""])
    finally:
        await db.dispose()
    return rows


async def api_load_wrk(stack, var: str, clients: int, duration: float, gzip: bool = False) -> list[str]:
    """The same load driven by wrk (C): the load generator's CPU no longer weighs on the
    server's share of the two cores. ``gzip``: the clients accept gzip, as browsers, httpx and
    requests do."""
    import httpx

    path = f"/api/contracts?exchange={EXCHANGE}&var={var}&mode=cache"
    encoding = "gzip" if gzip else "identity"
    r = await load_wrk(stack, "GET /api/contracts", "GET", path, None, {200}, clients, duration,
                       1.0, None, accept_encoding=encoding)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        one = await client.get(path, headers={"Accept-Encoding": encoding})
    stale = one.json()["cache_stale"]
    sent = one.num_bytes_downloaded
    return [f"{var} ({encoding})", r.requests, f"{r.requests / r.duration:.0f}", *(r.cells or []),
            f"{sent / 1024:.0f} KiB", r.errors, "yes" if stale else "no"]


async def api_load(stack, var: str, clients: int, duration: float) -> list[str]:
    path = f"/api/contracts?exchange={EXCHANGE}&var={var}&mode=cache"
    conns = [RawClient("127.0.0.1", stack.port) for _ in range(clients)]
    latencies: list[float] = []
    errors = 0
    size = 0
    stale = 0

    async def client(c: RawClient, end: float, record: bool) -> None:
        nonlocal errors, size, stale
        while time.perf_counter() < end:
            t = time.perf_counter()
            status, data = await c.request("GET", path)
            if record:
                latencies.append(time.perf_counter() - t)
                if status != 200:
                    errors += 1
                size = len(data)
                if b'"cache_stale": true' in data[-400:]:  # the answer's own fields end it
                    stale += 1
    try:
        t = time.perf_counter()
        await asyncio.gather(*(client(c, t + 1.0, False) for c in conns))  # warm-up
        t = time.perf_counter()
        await asyncio.gather(*(client(c, t + duration, True) for c in conns))
        took = time.perf_counter() - t
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    return [var, len(latencies), f"{len(latencies) / took:.0f}", *latency_cells(latencies),
            f"{size / 1024:.0f} KiB", errors, stale]


async def answer_in_process(db_url: str, var: str, n: int) -> list[str]:
    """The server's own work for one cache-mode answer (read, decide, the JSON bytes), without
    HTTP: what stays flat whatever the size of the lake."""
    from jobs.contracts import service
    from jobs.engine import Engine
    from jobs.settings import Settings

    engine = Engine(Settings(database_url=db_url), "redis://127.0.0.1:1/0")  # a fresh snapshot: no Redis
    samples = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            found = await service.answer(engine, EXCHANGE, var)
            body = await found.to_json(engine)
            samples.append(time.perf_counter() - t)
            assert found.job["job_id"] is None and not found.stale
    finally:
        await engine.close()
    return [var, n, *latency_cells(samples[n // 10:]), f"{len(body) / 1024:.0f} KiB"]


def page_render(stack, repeat: int) -> list[list[str]]:
    import httpx

    from jobs.contracts import store as cstore
    from jobs.db import Database
    from web import contracts as web_contracts
    from web.render import render

    async def in_process() -> tuple[float, float]:
        db = Database(stack.db_url)
        try:
            reads, renders = [], []
            for _ in range(3):  # the first of each pays for the connection and the template compile
                t = time.perf_counter()
                row = await cstore.snapshot(db, EXCHANGE, BIG)
                reads.append(time.perf_counter() - t)
                web_contracts._TABLES.clear()
                t = time.perf_counter()
                ctx = web_contracts._table_context(EXCHANGE, BIG, row, None)
                html = render("contracts/table.html", **ctx)
                renders.append(time.perf_counter() - t)
                assert html.count("<tr") > 1
        finally:
            await db.dispose()
        return min(reads[1:]), min(renders[1:])

    read, cold = asyncio.run(in_process())
    walls = []
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for _ in range(repeat):
            t = time.perf_counter()
            r = client.get("/contracts", params={"exchange": EXCHANGE, "var": BIG})
            walls.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text[:300]
    return [["snapshot row read (in process)", ms(read), "", ""],
            ["table render, first time for a snapshot (parse JSON + rows, in process)", ms(cold), "", ""],
            [f"GET /contracts over HTTP, {repeat} times (table kept per snapshot)",
             ms(statistics.median(walls)), ms(max(walls)), f"{len(r.text) / 1024:.0f} KiB"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contracts", type=int, default=1000)
    parser.add_argument("--days", type=int, default=1000)
    parser.add_argument("--lake-cache", type=Path, default=None,
                        help="where the generated lake is kept (default: a temp dir per size)")
    parser.add_argument("--repeat", type=int, default=3, help="warm and changed builds (median)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--client", choices=["raw", "wrk"], default="raw",
                        help="the API rows' load generator: raw (this process) or wrk")
    parser.add_argument("--web", type=int, default=None,
                        help="web processes (serve --web N; default: serve's default here)")
    args = parser.parse_args()
    sigterm_as_exit()
    # this process reads the snapshot too (the in-process rows): as fresh for it as for the stack
    os.environ["MARKETDESK_CONTRACTS_SNAPSHOT_TTL_S"] = "3600"

    from jobs.contracts.settings import ContractsSettings
    from jobs.migrate import upgrade_async
    from tests.stack import Stack
    from web.cli import default_web_processes

    args.web = args.web or default_web_processes()

    print(f"# contracts benchmark — {args.contracts} contracts x {args.days} days")
    print(machine_line() + f", load average {os.getloadavg()[0]:.1f} at start")
    size = f"{args.contracts}x{args.days}"
    lake = args.lake_cache or Path(tempfile.gettempdir()) / f"marketdesk-bench-lake-{size}"
    ticks = lake / "v1" / "ticks"
    days = trading_days_back(args.days)
    took = generate_lake(ticks, BIG, args.contracts, days)
    tiny_days = days[-20:]
    generate_lake(ticks, TINY, 5, tiny_days)
    print(f"lake: {lake} ({args.contracts * args.days:,} date folders; "
          + (f"generated in {took:.1f} s)" if took else "reused)"))
    work = Path(tempfile.mkdtemp(prefix="bench-contracts-"))
    try:
        catalog = work / "catalog.json"
        catalog.write_text(json.dumps({"exchanges": {EXCHANGE: {
            BIG: catalog_entries(BIG, args.contracts, days), TINY: catalog_entries(TINY, 5, tiny_days)}}}))
        settings = ContractsSettings(lake_dir=lake, contracts_catalog="file", contracts_catalog_file=catalog)
        stack_dir = work / "stack"
        stack_dir.mkdir()
        db_url = f"sqlite:///{stack_dir / 'marketdesk.db'}"
        asyncio.run(upgrade_async(db_url))
        rows = asyncio.run(builds(db_url, settings, args.repeat))
        print("\n## Builds (in process, SQLite; the OS's directory cache is warm in every row)\n")
        print(md_table(["build", "wall ms", "catalog ms", "local ms", "scan-cache hits", "rescanned"], rows))

        env = {"MARKETDESK_LAKE_DIR": str(lake), "MARKETDESK_CONTRACTS_CATALOG": "file",
               "MARKETDESK_CONTRACTS_CATALOG_FILE": str(catalog),
               "MARKETDESK_CONTRACTS_SNAPSHOT_TTL_S": "3600", "MARKETDESK_CONTRACTS_CATALOG_TTL_S": "3600"}
        with Stack(stack_dir, env=env, web=args.web) as stack:
            stack.db_url = db_url  # type: ignore[attr-defined]
            import httpx
            r = httpx.post(f"{stack.url}/api/contracts/build", json={"exchange": EXCHANGE, "var": TINY},
                           timeout=10)
            stack.wait(r.json()["job_id"], timeout=120)
            api_rows = []
            for var in (BIG, TINY):
                if args.client == "wrk":
                    for gz in (False, True):
                        api_rows.append(asyncio.run(
                            api_load_wrk(stack, var, args.clients, args.duration, gz)))
                else:
                    api_rows.append(asyncio.run(api_load(stack, var, args.clients, args.duration)))
            print(f"\n## GET /api/contracts?mode=cache, {args.clients} concurrent keep-alive clients "
                  f"({args.client}, {args.web} web process{'es' if args.web > 1 else ''}), "
                  f"{args.duration:.0f} s each (target p99 < 20 ms, big within 20% of tiny)\n")
            print(md_table(["lake", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "answer",
                            "errors", "stale answers"], api_rows))
            half = len(api_rows) // 2
            for big, tiny in zip(api_rows[:half], api_rows[half:], strict=True):
                print(f"\nbig/tiny p99 ({big[0]} / {tiny[0]}): {float(big[5]) / float(tiny[5]):.2f}")
            print("\n## The same answer in process, without HTTP (the server's own work)\n")
            inproc = [asyncio.run(answer_in_process(db_url, var, 2000)) for var in (BIG, TINY)]
            print(md_table(["lake", "answers", "p50 ms", "p95 ms", "p99 ms", "max ms", "answer"], inproc))
            print(f"\n## The /contracts page with {args.contracts} contracts (target < 100 ms server-side)\n")
            print(md_table(["what", "median ms", "max ms", "size"], page_render(stack, 20)))
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
