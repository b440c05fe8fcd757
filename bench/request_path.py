"""Request path: POST /api/prices/download and GET /jobs under N concurrent keep-alive clients.

Starts the real `marketdesk serve` (tests.stack.Stack) on a free port of 127.0.0.1 with a
huge MARKETDESK_MAX_QUEUED, so the queue never fills (a 429 would still be counted apart).
Each virtual client is one keep-alive connection that sends its next request as soon as the
last one answered (closed loop), or, with --rate, at fixed times (open loop: latency then
counts from the time the request was due, so a stalled server cannot hide its queue).

The load generator runs in this process on the same 2 cores as the server: its CPU use is
printed beside the server's so the reader can see how the cores were shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    CpuMeter,
    latency_cells,
    machine_line,
    md_table,
    py_spy_start,
    run,
    run_with_stack,
    sigterm_as_exit,
    stack_processes,
    summarize_py_spy,
)

from tests.stack import Stack
from web.cli import default_web_processes

BODY = {"symbols": ["AAPL"], "start_date": "2025-01-02", "end_date": "2025-01-10"}
REQUEST_TIMEOUT = 10.0


@dataclass
class Result:
    name: str
    client: str
    duration: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    waited: dict[str, float] = field(default_factory=dict)
    profile: str | None = None
    # with --drain during: the queue at the row's start and end, jobs the workers finished in it
    pending: tuple[int, int] | None = None
    finished: int | None = None
    # with --client wrk: wrk's own request count and percentiles (it keeps no list of latencies)
    count: int | None = None
    cells: list[str] | None = None
    # the web processes' event-loop lag over the minute before the row ended: (p99, max) ms,
    # and the same less the time the loop's thread waited for a CPU (None where not known)
    lag: tuple[float, float, float | None, float | None] | None = None

    @property
    def requests(self) -> int:
        return self.count if self.count is not None else len(self.latencies)

    def record(self, status: int, latency: float) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(latency)

    def fail(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(what)


# -- clients ----------------------------------------------------------------------------------
class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (Content-Length or chunked)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAccept: */*\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        status_line = await self.reader.readline()
        if not status_line:
            await self.close()
            raise ConnectionError("server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = -1, False, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size + 2))
            data = b"".join(p[:-2] for p in parts)
        elif length >= 0:
            data = await self.reader.readexactly(length)
        else:
            data = await self.reader.read()
            close = True
        if close:
            await self.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


class HttpxClient:
    def __init__(self, base_url: str) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=REQUEST_TIMEOUT,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else None
        resp = await self.client.request(method, path, content=body, headers=headers)
        return resp.status_code, resp.content

    async def close(self) -> None:
        await self.client.aclose()


def make_client(kind: str, stack: Stack) -> RawClient | HttpxClient:
    if kind == "raw":
        return RawClient("127.0.0.1", stack.port)
    return HttpxClient(stack.url)


# -- load -------------------------------------------------------------------------------------
async def virtual_client(client: RawClient | HttpxClient, method: str, path: str, body: bytes | None,
                         ok: set[int], result: Result, start: float, end: float,
                         interval: float | None, offset: float, budget: list[int]) -> None:
    due = start + offset
    while budget[0] > 0:
        if interval is not None:  # open loop: wait for the next due time
            now = time.perf_counter()
            if due >= end:
                break
            if due > now:
                await asyncio.sleep(due - now)
            t0 = due
            due += interval
        else:
            t0 = time.perf_counter()
            if t0 >= end:
                break
        budget[0] -= 1
        try:
            status, data = await asyncio.wait_for(client.request(method, path, body), REQUEST_TIMEOUT)
        except Exception as exc:  # a failed request is a data point, not the end of the bench
            result.fail(f"{type(exc).__name__}: {exc}")
            await client.close()
            continue
        result.record(status, time.perf_counter() - t0)
        if status not in ok and status != 429:
            result.fail(f"HTTP {status}: {data[:200]!r}")


async def load(stack: Stack, name: str, method: str, path: str, body: bytes | None, ok: set[int],
               client_kind: str, clients: int, duration: float, rate: float | None,
               warmup: float, max_requests: int, meter: CpuMeter | None,
               profile: Path | None = None) -> Result:
    conns = [make_client(client_kind, stack) for _ in range(clients)]
    try:
        if warmup > 0:  # open the connections and warm the server's caches; not counted
            scratch = Result(name, client_kind)
            t = time.perf_counter()
            await asyncio.gather(*(virtual_client(c, method, path, body, ok, scratch, t, t + warmup,
                                                  None, 0.0, [max_requests]) for c in conns))
        result = Result(name, client_kind)
        interval = clients / rate if rate else None
        budget = [max_requests]
        if meter:
            meter.start()
        spy = py_spy_start(stack.proc.pid, profile, duration) if profile else None  # type: ignore[union-attr]
        t = time.perf_counter()
        await asyncio.gather(*(
            virtual_client(c, method, path, body, ok, result, t, t + duration, interval,
                           (interval or 0.0) * i / clients, budget)
            for i, c in enumerate(conns)))
        result.duration = time.perf_counter() - t
        if meter:
            result.cpu = meter.stop()
            result.waited = dict(meter.waited)
        if spy is not None and profile is not None:
            await asyncio.to_thread(spy.wait, 60)
            result.profile = summarize_py_spy(profile, top=40)
        return result
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


WRK_SCRIPT = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  statuses = {}
  wrk.method = os.getenv("BENCH_METHOD")
  local encoding = os.getenv("BENCH_ACCEPT_ENCODING")
  if encoding ~= nil and encoding ~= "" then wrk.headers["Accept-Encoding"] = encoding end
  local body = os.getenv("BENCH_BODY")
  if body ~= nil and body ~= "" then
    wrk.body = body
    wrk.headers["Content-Type"] = "application/json"
  end
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local counts = {}
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do counts[status] = (counts[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(counts) do table.insert(parts, string.format('"%d": %d', status, n)) end
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "p50": %d, "p95": %d, "p99": %d, "max": %d, ' ..
    '"errors": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ", ")))
end
"""


async def load_wrk(stack: Stack, name: str, method: str, path: str, body: bytes | None,
                   ok: set[int], clients: int, duration: float, warmup: float,
                   meter: CpuMeter | None, threads: int = 2, accept_encoding: str = "") -> Result:
    """One row driven by wrk (C, epoll): 2 threads, ``clients`` keep-alive connections, closed
    loop. Its CPU is read from this process's reaped children (wrk is the only one reaped)."""
    import resource
    import shutil

    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("--client wrk needs wrk on PATH (apt-get install wrk)")
    script = stack.data_dir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    env = {**os.environ, "BENCH_METHOD": method, "BENCH_BODY": (body or b"").decode(),
           "BENCH_ACCEPT_ENCODING": accept_encoding}
    url = f"{stack.url}{path}"

    async def run_wrk(seconds: float) -> str:
        proc = await asyncio.create_subprocess_exec(
            wrk, f"-t{min(threads, clients)}", f"-c{clients}", f"-d{max(1, round(seconds))}s",
            f"--timeout={REQUEST_TIMEOUT:g}s", "-s", str(script), url, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return out.decode()

    if warmup > 0:
        await run_wrk(warmup)
    if meter:
        meter.start()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = await run_wrk(duration)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = Result(name, "wrk")
    if meter:
        result.cpu = meter.stop()
        result.waited = dict(meter.waited)
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{text}")
    data = json.loads(line[4:])
    result.duration = data["duration_us"] / 1e6
    result.count = data["requests"]
    result.cells = [f"{data[k] / 1000:.1f}" for k in ("p50", "p95", "p99", "max")]
    result.statuses = {int(k): v for k, v in data["statuses"].items()}
    result.errors = data["errors"] + sum(n for s, n in result.statuses.items()
                                         if s not in ok and s != 429)
    if data["errors"]:
        result.error_samples.append(f"{data['errors']} socket errors or timeouts")
    result.cpu["load generator"] = ((after.ru_utime - before.ru_utime)
                                    + (after.ru_stime - before.ru_stime))
    return result


def loop_lag(stack: Stack) -> tuple[float, float, float | None, float | None] | None:
    """The worst web process's event-loop lag (p99, max in ms; then the same less the time the
    loop's thread waited for a CPU) as the operations monitor last reported it to Redis (each
    monitor probes every 0.1 s and keeps a minute of probes)."""
    import redis

    from jobs.ops.health import LAG_KEY_PREFIX

    time.sleep(1.2)  # one more report (every health check, 1 s) covering the row's end
    client = redis.Redis(unix_socket_path=str(stack.redis_socket))
    try:
        keys = list(client.scan_iter(LAG_KEY_PREFIX + "web:*"))
        stats = [json.loads(v) for v in client.mget(keys) if v] if keys else []
    finally:
        client.close()
    stats = [s for s in stats if s.get("max_ms") is not None]
    if not stats:
        return None
    own = [s for s in stats if s.get("own_max_ms") is not None]
    return (max(s["p99_ms"] for s in stats), max(s["max_ms"] for s in stats),
            max((s["own_p99_ms"] for s in own), default=None),
            max((s["own_max_ms"] for s in own), default=None))


def pending_count(stack: Stack) -> int:
    import httpx

    r = httpx.get(f"{stack.url}/api/jobs", params={"status": "pending", "limit": 1}, timeout=10)
    return int(r.json()["total"])


FINISHED = ("completed", "partial", "failed", "cancelled")


def finished_count(stack: Stack) -> int:
    """Jobs in a terminal status (from the kept counts: cheap at any size)."""
    import httpx

    with httpx.Client(base_url=stack.url, timeout=10) as client:
        return sum(int(client.get("/api/jobs", params={"status": s, "limit": 1}).json()["total"])
                   for s in FINISHED)


async def wait_drained(stack: Stack, limit_s: float) -> tuple[bool, float, int]:
    start = time.monotonic()
    left = await asyncio.to_thread(pending_count, stack)
    while left and time.monotonic() - start < limit_s:
        await asyncio.sleep(0.5)
        left = await asyncio.to_thread(pending_count, stack)
    return left == 0, time.monotonic() - start, left


async def top_up(stack: Stack, backlog: int, body: bytes) -> int:
    """Post downloads until ``backlog`` jobs are pending, so the workers drain all through the
    next row; the pending count reached."""
    left = await asyncio.to_thread(pending_count, stack)
    missing = backlog - left
    if missing <= 0:
        return left
    budget = [missing]
    scratch = Result("backlog", "raw")
    conns = [RawClient("127.0.0.1", stack.port) for _ in range(20)]
    t = time.perf_counter()
    try:
        await asyncio.gather(*(virtual_client(c, "POST", "/api/prices/download", body, {202},
                                              scratch, t, t + 120, None, 0.0, budget)
                               for c in conns))
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    return await asyncio.to_thread(pending_count, stack)


def trigger_body() -> bytes:
    from datetime import UTC, datetime, timedelta

    end = (datetime.now(UTC) - timedelta(days=1)).date()
    return json.dumps({"start_date": (end - timedelta(days=13)).isoformat(),
                       "end_date": end.isoformat()}).encode()


async def one_row(stack: Stack, target: str, kind: str, args: argparse.Namespace,
                  meter: CpuMeter, profile: Path | None) -> list[Result]:
    body = json.dumps(BODY).encode()
    if kind == "wrk":
        return await one_row_wrk(stack, target, args, meter, body)
    common = (kind, args.clients, args.duration, args.rate, args.warmup, args.max_requests)
    if target == "post":
        return [await load(stack, "POST /api/prices/download", "POST", "/api/prices/download",
                           body, {202}, *common, meter, profile)]
    if target == "get":
        return [await load(stack, "GET /jobs", "GET", "/jobs", None, {200}, *common, meter, profile)]
    if target == "trigger":  # one simulation at a time: the others are refused (400) after the checks
        row = await load(stack, "POST /simulate/trigger", "POST", "/simulate/trigger",
                         trigger_body(), {200, 400}, *common, meter, profile)
        probe = RawClient("127.0.0.1", stack.port)  # what the 4xx said (busy, not a bad request)
        try:
            status, data = await probe.request("POST", "/simulate/trigger", trigger_body())
        finally:
            await probe.close()
        print(f"# a trigger after the row answered {status}: {data[:120]!r}", flush=True)
        return [row]
    # mix: GET /jobs beside POST download, at once, each on its own connections
    n_get, n_post = args.mix
    rate = (lambda n: args.rate * n / (n_get + n_post)) if args.rate else (lambda n: None)
    get_row, post_row = await asyncio.gather(
        load(stack, f"mix: GET /jobs ({n_get} conns)", "GET", "/jobs", None, {200}, kind, n_get,
             args.duration, rate(n_get), args.warmup, args.max_requests, meter, profile),
        load(stack, f"mix: POST /api/prices/download ({n_post} conns)", "POST",
             "/api/prices/download", body, {202}, kind, n_post, args.duration, rate(n_post),
             args.warmup, args.max_requests, None, None))
    post_row.cpu, post_row.waited = get_row.cpu, get_row.waited  # one meter for the two
    return [get_row, post_row]


async def one_row_wrk(stack: Stack, target: str, args: argparse.Namespace, meter: CpuMeter,
                      body: bytes) -> list[Result]:
    common = (args.duration, args.warmup)
    if target == "post":
        return [await load_wrk(stack, "POST /api/prices/download", "POST", "/api/prices/download",
                               body, {202}, args.clients, *common, meter)]
    if target == "get":
        return [await load_wrk(stack, "GET /jobs", "GET", "/jobs", None, {200}, args.clients,
                               *common, meter)]
    if target == "trigger":
        return [await load_wrk(stack, "POST /simulate/trigger", "POST", "/simulate/trigger",
                               trigger_body(), {200, 400}, args.clients, *common, meter)]
    n_get, n_post = args.mix
    get_row, post_row = await asyncio.gather(
        load_wrk(stack, f"mix: GET /jobs ({n_get} conns)", "GET", "/jobs", None, {200}, n_get,
                 *common, meter, threads=1),
        load_wrk(stack, f"mix: POST /api/prices/download ({n_post} conns)", "POST",
                 "/api/prices/download", body, {202}, n_post, *common, None, threads=1))
    # one meter and one children's-CPU reading for the two (both wrk processes are reaped by then)
    wrk_cpu = get_row.cpu.get("load generator", 0.0) + post_row.cpu.get("load generator", 0.0)
    get_row.cpu["load generator"] = wrk_cpu
    post_row.cpu, post_row.waited = get_row.cpu, get_row.waited
    return [get_row, post_row]


async def bench(stack: Stack, args: argparse.Namespace) -> list[Result]:
    procs = stack_processes(stack.proc.pid)  # type: ignore[union-attr]
    procs = {"load generator": os.getpid(), **procs}
    meter = CpuMeter(procs)
    body = json.dumps(BODY).encode()
    kinds = ["httpx", "raw"] if args.client == "both" else [args.client]
    during = args.drain == "during" and args.workers > 0
    results: list[Result] = []
    for kind in kinds:
        for target in args.targets:
            profile = stack.data_dir / f"web-{target}-{kind}.pyspy" if args.profile else None
            pending0 = finished0 = 0
            if during:
                pending0 = await top_up(stack, args.backlog, body)
                finished0 = await asyncio.to_thread(finished_count, stack)
            rows = await one_row(stack, target, kind, args, meter, profile)
            lag = await asyncio.to_thread(loop_lag, stack)
            for r in rows:
                r.lag = lag
            if during:
                pending1 = await asyncio.to_thread(pending_count, stack)
                finished1 = await asyncio.to_thread(finished_count, stack)
                for r in rows:
                    r.pending, r.finished = (pending0, pending1), finished1 - finished0
                if pending1 == 0:
                    print(f"# warning: the queue ran dry during {target}: raise --backlog",
                          flush=True)
            elif target in ("post", "mix") and args.workers and args.drain_timeout > 0:
                drained, took, left = await wait_drained(stack, args.drain_timeout)
                print(f"# queue after {target} ({kind}): "
                      + (f"drained in {took:.1f} s" if drained
                         else f"{left} still pending after {took:.1f} s"), flush=True)
            results.extend(rows)
            for r in rows:
                print(f"# done: {r.name} with {kind}: {r.requests} requests", flush=True)
    if args.workers and args.drain_timeout > 0:
        drained, took, left = await wait_drained(stack, args.drain_timeout)
        print("# queue at the end: " + (f"drained in {took:.1f} s" if drained
                                        else f"{left} still pending after {took:.1f} s"), flush=True)
    return results


def job_outcomes(stack: Stack) -> str:
    """What became of every job the bench made, read from the database: failed or requeued
    jobs (and why) would be the web's database work costing the worker its jobs."""
    import sqlite3

    path = stack.data_dir / "marketdesk.db"
    if not path.exists():
        return ""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        by_status = conn.execute("SELECT status, count(*), sum(attempts > 1) FROM job "
                                 "GROUP BY status ORDER BY 2 DESC").fetchall()
        errors = conn.execute("SELECT error, count(*) FROM job WHERE status = 'failed' "
                              "GROUP BY error ORDER BY 2 DESC LIMIT 5").fetchall()
    finally:
        conn.close()
    parts = [f"{status} {n:,}" + (f" ({again:,} after a requeue)" if again else "")
             for status, n, again in by_status]
    out = "jobs at the end: " + (", ".join(parts) or "none")
    for error, n in errors:
        out += f"\n- failed ({n:,}): {error}"
    return out


def web_sum(per_process: dict[str, float]) -> float:
    """The web processes' share: the serve process and `serve --web N`'s extra ones."""
    return sum(v for name, v in per_process.items()
               if name == "web (serve)" or name.startswith("marketdesk web"))


def report(results: list[Result], args: argparse.Namespace, stack: Stack, outcomes: str) -> str:
    mode = (f"open loop at {args.rate:g} req/s total" if args.rate
            else "closed loop (each client sends its next request when the last one answered)")
    during = args.drain == "during" and args.workers > 0
    out = [f"## Request path: {args.clients} concurrent keep-alive clients, {args.duration:g} s "
           f"per row, {mode}\n",
           machine_line() + f"; load average now {os.getloadavg()[0]:.2f}; stack: {args.web} web "
           f"process{'es' if args.web > 1 else ''}, "
           f"{args.workers} worker(s), embedded Redis, SQLite",
           ("load generator: wrk (2 threads; 1 each for the mix's two parts), on the same cores "
            "as the server" if args.client == "wrk" else
            "load generator: this Python process (uvloop), on the same cores as the server"),
           ("the workers drain a backlog all through every row (topped up to "
            f"{args.backlog:,} pending jobs before each)" if during else
            "the workers drain what a POST row posted after it, before the next row"), ""]
    rows = []
    for r in results:
        ok = sum(n for s, n in r.statuses.items() if 200 <= s < 300)
        n4xx = sum(n for s, n in r.statuses.items() if 400 <= s < 500 and s != 429)
        n429 = r.statuses.get(429, 0)
        row = [r.name, r.client, r.requests, f"{r.requests / r.duration:.0f}",
               *(r.cells or latency_cells(r.latencies)), ok, n4xx, n429, r.errors,
               f"{r.lag[0]:.0f} / {r.lag[1]:.0f}" if r.lag else "—",
               f"{r.lag[2]:.0f} / {r.lag[3]:.0f}" if r.lag and r.lag[3] is not None else "—"]
        if during:
            row += [f"{r.pending[0]:,} → {r.pending[1]:,}" if r.pending else "—",
                    f"{r.finished:,}" if r.finished is not None else "—"]
        rows.append(row)
    headers = ["endpoint", "client", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
               "2xx", "4xx", "429", "errors", "loop lag p99 / max ms",
               "own lag p99 / max ms"]
    if during:
        headers += ["pending start → end", "jobs finished in the row"]
    out.append(md_table(headers, rows))
    out.append("\nCPU seconds used during each row (2 cores = at most "
               f"{2 * args.duration:g} CPU-s per {args.duration:g} s row; a mix row's two parts "
               "share one reading):\n")
    names = list(results[0].cpu) if results else []
    cpu_rows = []
    for r in results:
        total = sum(r.cpu.values())
        cpu_rows.append([r.name, r.client, *(f"{r.cpu.get(n, 0):.2f}" for n in names), f"{total:.2f}",
                         f"{web_sum(r.cpu) / max(r.requests, 1) * 1e3:.2f}",
                         f"{web_sum(r.waited):.2f}"])
    out.append(md_table(["endpoint", "client", *names, "total", "web CPU ms/request",
                         "web loop thread runnable but off-CPU, s"], cpu_rows))
    if outcomes:
        out.append("\n" + outcomes)
    for r in results:
        for sample in r.error_samples:
            out.append(f"error sample ({r.name}, {r.client}): {sample}")
    for r in results:
        if r.profile:
            out.append(f"\n### py-spy of the web process: {r.name} ({r.client})\n\n```\n{r.profile}\n```")
    out.append("\nloop lag: the worst web process's event-loop lag over the minute before the row "
               "ended (probes every 0.1 s; the operations monitor's own figure), so a row's "
               "reading can include the end of the row before it. Own lag: the same probes less "
               "the time the loop's thread waited, runnable, for a CPU (Linux's schedstat): what "
               "the loop's own callbacks and any blocking call in one caused, not the other "
               "processes on the two cores.")
    out.append("\ntarget: p99 < 50 ms. In a closed loop, Little's law ties latency to throughput: "
               "mean latency = clients / (req/s).")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per row (default 10)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--client", choices=["httpx", "raw", "both", "wrk"], default="raw",
                        help="load generator: raw asyncio (default; ~5x less CPU per request than "
                        "httpx), httpx, both to compare, or wrk (C; closed loop only, 2 threads; "
                        "apt-get install wrk)")
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: total requests per second (default: closed loop)")
    parser.add_argument("--targets", nargs="+", choices=["post", "get", "trigger", "mix"],
                        default=["post", "get", "trigger", "mix"],
                        help="rows, in order: post (POST /api/prices/download), get (GET /jobs), "
                        "trigger (POST /simulate/trigger), mix (GET /jobs beside POST download)")
    parser.add_argument("--mix", nargs=2, type=int, default=[40, 10], metavar=("GET", "POST"),
                        help="connections of the mix row (default 40 GET /jobs + 10 POST download)")
    parser.add_argument("--drain", choices=["after", "during"], default="after",
                        help="after: the workers drain what a POST row posted before the next row; "
                        "during: every row runs while the workers drain a backlog")
    parser.add_argument("--backlog", type=int, default=2000,
                        help="with --drain during: pending jobs to top up to before each row")
    parser.add_argument("--save", type=Path, default=None,
                        help="also write the tables to this markdown file (e.g. "
                        "bench/results/request-path.md)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes draining the queue")
    parser.add_argument("--web", type=int, default=default_web_processes(),
                        help="web processes (serve --web N; default: serve's default here)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of uncounted warm-up")
    parser.add_argument("--drain-timeout", type=float, default=90.0,
                        help="after a POST row, wait this long for the workers to drain the queue")
    parser.add_argument("--max-requests", type=int, default=200_000, help="hard cap per row")
    parser.add_argument("--profile", action="store_true",
                        help="sample the web process with py-spy during each row (slows it a little)")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temp dir")
    args = parser.parse_args()
    if args.client == "wrk" and args.rate:
        parser.error("--rate needs --client raw or httpx (wrk runs a closed loop)")
    sigterm_as_exit()
    with tempfile.TemporaryDirectory(prefix="bench-request-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        stack = Stack(data_dir, workers=args.workers, web=args.web,
                      env={"MARKETDESK_MAX_QUEUED": "1000000"})

        def work() -> None:
            results = run(bench(stack, args))
            text = report(results, args, stack, job_outcomes(stack))
            print("\n" + text, flush=True)
            if args.save:
                save(args.save, text, args)
        run_with_stack(stack, work, f" (data in {data_dir})")


def save(path: Path, text: str, args: argparse.Namespace) -> None:
    """Add this run's tables to ``path`` (a results file keeps one section per run mode)."""
    from datetime import UTC, datetime

    title = ("# bench/request_path.py\n\nThe machine's two cores were shared with other "
             "engineers' test suites while these ran: each section gives the load average.\n")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "uv run python bench/request_path.py " + " ".join(sys.argv[1:])
    section = (f"\n<!-- {args.drain} -->\n## {when}: `{command}`\n\n"
               + text.replace("## Request path", "### Request path", 1))
    old = path.read_text() if path.exists() else title
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(old + section)
    print(f"# added to {path}", flush=True)


if __name__ == "__main__":
    main()
