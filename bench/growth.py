"""Growth: every page and API answer as the data grows, one client, on SQLite and PostgreSQL.

For each size step (default: 1,000 jobs + 20 symbols, 100,000 + 500, 1,000,000 + 5,000; the
symbols with two years of daily bars each), a fresh database is migrated and seeded
(bench/seed.py: a realistic mix of finished jobs, a few unfinished, one pending simulation so
the trigger's busy check runs), `marketdesk serve` is started on it (tests.stack.Stack, no
worker); the stacks of all steps run side by side, and one client sends each request one after
another, in turn to each step in a shuffled order (3 warm-ups, then 30 measured): p50 / p95
per endpoint and size. Interleaving the steps makes what else runs on the shared machine weigh
on every size alike. A page whose time grows with the data shows a max/min ratio above 1.2
(flagged). Target (issue 8): every answer within 20% from the smallest to the largest step.

    uv run python bench/growth.py                        # SQLite (+ PostgreSQL if configured)
    uv run python bench/growth.py --quick                # small steps, a minute or two
    uv run python bench/growth.py --databases postgres --postgres postgresql://postgres@127.0.0.1/postgres
    uv run python bench/growth.py --steps 1000:20 1000000:5000 --requests 50

PostgreSQL runs when ``--postgres URL`` or MARKETDESK_TEST_POSTGRES_URL is given (a fresh
database per step, dropped after). Tables go to bench/results/growth-<db>.md (not for --quick
unless --save).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import ROOT, machine_line, md_table, percentile, run, sigterm_as_exit, stop_stack
from request_path import RawClient
from seed import Seeded, seed, symbol_names

from tests.stack import Stack, postgres_base_url
from web.dashboard import MAX_OFFSET

REQUEST_TIMEOUT = 120.0
FLAG = 1.2


@dataclass(frozen=True)
class Endpoint:
    label: str  # the row's name (the same at every size)
    group: str  # "jobs" or "prices": which table it belongs to
    method: str = "GET"
    path: str = ""  # may hold {placeholders} filled from the seeded data
    body: bytes | None = None
    ok: tuple[int, ...] = (200,)
    sse_event: str | None = None  # an SSE connect: time until this event's first line
    expect: bytes | None = None  # the answer must hold this (e.g. why a 400)


def _trigger_body() -> bytes:
    end = (datetime.now(UTC) - timedelta(days=1)).date()
    return (f'{{"start_date": "{(end - timedelta(days=13)).isoformat()}", '
            f'"end_date": "{end.isoformat()}"}}').encode()


ENDPOINTS = (
    Endpoint("GET /", "jobs", path="/"),
    Endpoint("GET /jobs", "jobs", path="/jobs"),
    Endpoint("GET /jobs?kind=prices.download", "jobs", path="/jobs?kind=prices.download"),
    Endpoint("GET /jobs?status=failed", "jobs", path="/jobs?status=failed"),
    Endpoint("GET /jobs?q=<4-char id prefix>", "jobs", path="/jobs?q={prefix}"),
    Endpoint("GET /jobs?before=<an oldest id> (deepest page)", "jobs", path="/jobs?before={old_id}"),
    Endpoint("GET /jobs?offset=<deepest allowed, ≤ 10,000> (by hand)", "jobs",
             path="/jobs?offset={last_offset}"),
    Endpoint("GET /jobs/<id>", "jobs", path="/jobs/{newest_id}"),
    Endpoint("GET /api/jobs", "jobs", path="/api/jobs"),
    Endpoint("GET /api/jobs?kind=prices.download&limit=200", "jobs",
             path="/api/jobs?kind=prices.download&limit=200"),
    Endpoint("GET /simulations", "jobs", path="/simulations"),
    Endpoint("POST /simulate/trigger (400 busy)", "jobs", method="POST", path="/simulate/trigger",
             body=_trigger_body(), ok=(400,), expect=b"already running or pending"),
    Endpoint("SSE /events?topic=jobs: connect → overview", "jobs", path="/events?topic=jobs",
             sse_event="overview"),
    Endpoint("GET /prices", "prices", path="/prices"),
    Endpoint("GET /prices?offset=<last page>", "prices", path="/prices?offset={coverage_last}"),
    Endpoint("GET /api/prices/coverage", "prices", path="/api/prices/coverage"),
    Endpoint("GET /api/prices/coverage?symbols=<one>", "prices",
             path="/api/prices/coverage?symbols={symbol}"),
    Endpoint("SSE /events?topic=prices: connect → coverage", "prices", path="/events?topic=prices",
             sse_event="coverage"),
)


@dataclass
class Measured:
    samples: list[float] = field(default_factory=list)
    size: int = 0  # bytes of the last answer's body
    errors: list[str] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)


@dataclass
class Step:
    jobs: int
    symbols: int
    seeded: Seeded | None = None
    seed_seconds: float = 0.0
    db_bytes: int = 0
    results: dict[str, Measured] = field(default_factory=dict)
    pager: str = ""
    load_before: float = 0.0
    load_after: float = 0.0


# -- measuring --------------------------------------------------------------------------------
async def sse_first(port: int, path: str, event: str) -> tuple[float, int]:
    """Seconds from connecting to /events until the ``event`` of the on-connect state arrives;
    the bytes read until then."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
                     .encode())
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"SSE answered {status!r}")
        got = 0
        wanted = f"event: {event}".encode()
        while True:
            line = await reader.readline()
            if not line:
                raise RuntimeError(f"stream ended before the {event} event")
            got += len(line)
            if line.strip() == wanted:
                # its data follows up to the blank line that ends the message
                while (line := await reader.readline()).strip():
                    got += len(line)
                return time.perf_counter() - t0, got
    finally:
        writer.close()
        with _suppress():
            await writer.wait_closed()


def _suppress() -> Any:
    import contextlib

    return contextlib.suppress(OSError)


class Probe:
    """One step's client: a keep-alive connection to that step's stack."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client = RawClient("127.0.0.1", port)

    async def once(self, ep: Endpoint, path: str, out: Measured, keep: bool) -> None:
        try:
            if ep.sse_event:
                took, out.size = await asyncio.wait_for(
                    sse_first(self.port, path, ep.sse_event), REQUEST_TIMEOUT)
            else:
                t0 = time.perf_counter()
                status, data = await asyncio.wait_for(
                    self.client.request(ep.method, path, ep.body), REQUEST_TIMEOUT)
                took = time.perf_counter() - t0
                out.size = len(data)
                if status not in ep.ok or (ep.expect is not None and ep.expect not in data):
                    out.errors.append(f"HTTP {status}: {data[:160]!r}")
                    return
        except Exception as exc:  # a failed request is a finding, not the end of the bench
            out.errors.append(f"{type(exc).__name__}: {exc}")
            await self.client.close()
            return
        if keep:
            out.samples.append(took)

    async def close(self) -> None:
        await self.client.close()


async def measure_interleaved(steps: list[Step], ports: list[int], ep: Endpoint,
                              requests: int, warmup: int) -> None:
    """The endpoint at every step, round-robin (one request to each step in turn), so that
    what else runs on the shared machine weighs on every size alike."""
    probes = [Probe(port) for port in ports]
    paths = [fill(ep, step.seeded, step) for step in steps]  # type: ignore[arg-type]
    outs = [step.results.setdefault(ep.label, Measured()) for step in steps]
    order = list(range(len(steps)))
    shuffle = random.Random(len(ep.label)).shuffle
    try:
        for i in range(warmup + requests):
            shuffle(order)  # no step always first (or last) in a round
            for k in order:
                await probes[k].once(ep, paths[k], outs[k], keep=i >= warmup)
    finally:
        for probe in probes:
            await probe.close()


async def follow_pager(port: int, pages: int) -> str:
    """Follow the jobs list's `older →` link ``pages`` times: each must answer 200 with rows."""
    client = RawClient("127.0.0.1", port)
    link = re.compile(rb'data-testid="page-next" href="([^"]+)"')
    path, times = "/jobs", []
    try:
        for _ in range(pages):
            t0 = time.perf_counter()
            status, data = await client.request("GET", path)
            times.append(time.perf_counter() - t0)
            found = link.search(data)
            if status != 200 or found is None:
                return f"pager: {path} answered {status} without an older link"
            path = found.group(1).decode().replace("&amp;", "&")
    finally:
        await client.close()
    return (f"pager: followed `older →` {pages} times, each 200 with a next link "
            f"(p50 {percentile(times, 50) * 1000:.1f} ms); last: {path}")


def fill(ep: Endpoint, seeded: Seeded, step: Step) -> str:
    names = symbol_names(step.symbols) if step.symbols else ["AAPL"]
    return ep.path.format(prefix=seeded.newest_id[:4], old_id=seeded.old_id,
                          newest_id=seeded.newest_id, last_offset=min(max(step.jobs - 25, 0), MAX_OFFSET),
                          coverage_last=max((step.symbols - 1) // 100 * 100, 0),
                          symbol=names[len(names) // 2])


async def measure_all(steps: list[Step], ports: list[int], args: argparse.Namespace) -> None:
    for step, port in zip(steps, ports, strict=True):
        step.pager = await follow_pager(port, 3)
        step.load_before = os.getloadavg()[0]
    for ep in ENDPOINTS:
        await measure_interleaved(steps, ports, ep, args.requests, args.warmup)
        print(f"#   {ep.label}: " + "; ".join(
            f"p50 {s.results[ep.label].p50 * 1000:.1f} ms"
            + (f" ({len(s.results[ep.label].errors)} errors: {s.results[ep.label].errors[:1]})"
               if s.results[ep.label].errors else "") for s in steps), flush=True)
    for step in steps:
        step.load_after = os.getloadavg()[0]


# -- one step ---------------------------------------------------------------------------------
def drop_postgres(url: str) -> None:
    import asyncpg

    head, _, name = url.rpartition("/")
    dsn = (postgres_base_url() or head).replace("postgresql+asyncpg://", "postgresql://")

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
    asyncio.run(drop())


def database_bytes(url: str, data_dir: Path) -> int:
    if url.startswith("sqlite"):
        return sum(p.stat().st_size for p in data_dir.glob("marketdesk.db*"))
    import asyncpg

    async def size() -> int:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
        finally:
            await conn.close()
    return asyncio.run(size())


def run_steps(database: str, steps: list[Step], tmp: Path, args: argparse.Namespace) -> None:
    """Seed a fresh database per step, start a stack on each, and measure them side by side."""
    from jobs.migrate import upgrade

    stacks: list[Stack] = []
    urls: list[str] = []
    interrupted = False
    try:
        for step in steps:
            data_dir = (tmp / f"{database}-{step.jobs}-{step.symbols}").resolve()
            data_dir.mkdir(parents=True)
            stack = Stack(data_dir, workers=0, database=database)
            stacks.append(stack)
            url = stack.env.get("MARKETDESK_DATABASE_URL") or f"sqlite:///{data_dir / 'marketdesk.db'}"
            urls.append(url)
            print(f"# {database}: seeding {step.jobs:,} jobs and {step.symbols:,} symbols", flush=True)
            t = time.perf_counter()
            upgrade(url)
            step.seeded = seed(url, jobs=step.jobs, symbols=step.symbols, years=args.years)
            step.seed_seconds = time.perf_counter() - t
            step.db_bytes = database_bytes(url, data_dir)
            print(f"# seeded in {step.seed_seconds:.1f} s ({step.db_bytes / 2**20:,.0f} MiB)",
                  flush=True)
        for stack in stacks:
            stack.start(timeout=300, wait_workers=False)
        print(f"# {len(stacks)} stacks up; measuring", flush=True)
        run(measure_all(steps, [s.port for s in stacks], args))
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        for stack, url in zip(stacks, urls, strict=False):
            stop_stack(stack, interrupted)
            if database == "postgres":
                drop_postgres(url)
            if not args.keep:
                shutil.rmtree(stack.data_dir, ignore_errors=True)


# -- report -----------------------------------------------------------------------------------
def _ms(v: float) -> str:
    return "—" if v != v else f"{v * 1000:.1f}"


def growth_table(steps: list[Step], group: str) -> str:
    def size(s: Step) -> str:
        return f"{s.jobs:,} jobs" if group == "jobs" else f"{s.symbols:,} symbols"
    headers = ["endpoint (p50 / p95 ms)", *(size(s) for s in steps), "max/min p50"]
    rows = []
    for ep in ENDPOINTS:
        if ep.group != group:
            continue
        cells, p50s = [], []
        for s in steps:
            m = s.results.get(ep.label)
            if m is None or not m.samples:
                cells.append("error" if m and m.errors else "—")
                continue
            p50s.append(m.p50)
            cells.append(f"{_ms(m.p50)} / {_ms(m.p95)}" + (f" ({len(m.errors)} err)" if m.errors else ""))
        ratio = max(p50s) / min(p50s) if len(p50s) > 1 and min(p50s) > 0 else float("nan")
        flag = "—" if ratio != ratio else (f"**{ratio:.2f} ⚠**" if ratio > FLAG else f"{ratio:.2f}")
        rows.append([ep.label, *cells, flag])
    return md_table(headers, rows)


def size_table(steps: list[Step], group: str) -> str:
    headers = ["answer size (KiB)", *(f"{s.jobs:,} jobs / {s.symbols:,} symbols" for s in steps)]
    rows = []
    for ep in ENDPOINTS:
        if ep.group == group:
            rows.append([ep.label, *(f"{s.results[ep.label].size / 1024:.1f}"
                                     if ep.label in s.results else "—" for s in steps)])
    return md_table(headers, rows)


def report(database: str, steps: list[Step], args: argparse.Namespace, started: str) -> str:
    lines = [f"## Growth on {'SQLite' if database == 'sqlite' else 'PostgreSQL'}", "",
             f"{machine_line()}; run {started}; {args.requests} sequential requests per cell "
             f"after {args.warmup} warm-ups, one keep-alive client per step (SSE rows: a new "
             "connection each), the steps' stacks side by side and asked in turn, in a shuffled "
             "order each round (so the "
             "machine's other load weighs on every size alike); `marketdesk serve`, no worker, "
             "embedded Redis.", "",
             "Each step is a fresh database seeded by bench/seed.py (jobs over 180 days, mostly "
             f"finished, 5 unfinished incl. one pending simulation; symbols × {args.years:g} years "
             "of trading days): "
             + "; ".join(f"{s.jobs:,} jobs + {s.symbols:,} symbols seeded in {s.seed_seconds:.0f} s "
                         f"({s.db_bytes / 2**20:,.0f} MiB)" for s in steps)
             + f". Load average {steps[0].load_before:.1f} at the start of the measurements, "
             f"{steps[0].load_after:.1f} at the end.", "",
             f"Cells are p50 / p95 in ms; max/min is the largest p50 over the smallest (flagged above "
             f"{FLAG}: the target is within 20%).", "",
             "### As job rows grow", "", growth_table(steps, "jobs"), "",
             "### As symbols grow", "", growth_table(steps, "prices"), "",
             "### Answer sizes", "", size_table(steps, "jobs"), "", size_table(steps, "prices"), ""]
    for s in steps:
        if s.pager:
            lines.append(f"- {s.jobs:,} jobs: {s.pager}")
        for label, m in s.results.items():
            for err in m.errors[:2]:
                lines.append(f"- {s.jobs:,} jobs / {s.symbols:,} symbols, {label}: {err}")
    return "\n".join(lines) + "\n"


def parse_step(text: str) -> tuple[int, int]:
    jobs, _, symbols = text.partition(":")
    return int(jobs.replace("_", "")), int((symbols or "0").replace("_", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", nargs="+", type=parse_step, default=None,
                        help="JOBS:SYMBOLS per step (default 1000:20 100000:500 1000000:5000)")
    parser.add_argument("--quick", action="store_true", help="steps 200:5 and 5000:50, 10 requests")
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgres"], default=None,
                        help="default: sqlite, and postgres when a server is configured")
    parser.add_argument("--postgres", default=None,
                        help="a PostgreSQL server's URL (else MARKETDESK_TEST_POSTGRES_URL)")
    parser.add_argument("--requests", type=int, default=None, help="measured requests (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="uncounted requests first")
    parser.add_argument("--years", type=float, default=2.0, help="years of bars per symbol")
    parser.add_argument("--save", action="store_true", help="write the results file for --quick too")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    parser.add_argument("--keep", action="store_true", help="keep the seeded SQLite files")
    args = parser.parse_args()
    if args.postgres:
        os.environ["MARKETDESK_TEST_POSTGRES_URL"] = args.postgres
    steps = args.steps or ([(200, 5), (5000, 50)] if args.quick
                           else [(1000, 20), (100_000, 500), (1_000_000, 5000)])
    args.requests = args.requests or (10 if args.quick else 30)
    databases = args.databases or (["sqlite", "postgres"] if postgres_base_url() else ["sqlite"])
    if "postgres" in databases and not postgres_base_url():
        parser.error("postgres: give --postgres URL or set MARKETDESK_TEST_POSTGRES_URL")
    sigterm_as_exit()
    save = not args.no_save and (args.save or not args.quick)
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        for database in databases:
            started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            done = [Step(jobs, symbols) for jobs, symbols in steps]
            run_steps(database, done, Path(tmp), args)
            text = report(database, done, args, started)
            print("\n" + text, flush=True)
            if save:
                out = ROOT / "bench" / "results" / f"growth-{database}.md"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(f"# bench/growth.py on {database}\n\n"
                               "The machine's two cores were shared with other engineers' test "
                               "suites while this ran: the load averages below say how much.\n\n"
                               + text)
                print(f"# wrote {out.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    main()
