"""SSE fan-out: N clients on one web process, M events, publish → receipt latency per client.

Starts the real `marketdesk serve` with no worker (tests.stack.Stack, workers=0) and creates
one pending job. N clients (raw asyncio sockets, HTTP/1.1, chunked SSE parsed by hand, in this
process on uvloop) subscribe to ``/events?topic=job:<id>`` (or ``jobs``). Once every client has
its first (state) event, a publisher in a separate process appends M ``job`` events to the
Redis event stream with jobs.events.EventBus — the same XADD the worker does after a commit —
and records, per stream id, the wall-clock time just before each XADD. Every client stamps
each event it receives with the wall-clock time of the read that completed it; latency is the
difference (one machine, one clock). Also: the web process's RSS before and after the clients
connected (→ memory per client), events lost, and the CPU each side used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    cpu_seconds,
    latency_cells,
    machine_line,
    md_table,
    py_spy_start,
    raise_nofile,
    rss_bytes,
    run,
    run_with_stack,
    sched_seconds,
    sigterm_as_exit,
    summarize_py_spy,
)

from tests.stack import Stack

READ_SIZE = 65536


@dataclass(eq=False)
class SseClient:
    index: int
    received: dict[str, float] = field(default_factory=dict)  # stream id -> receipt time
    first: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None
    closed: bool = False
    writer: asyncio.StreamWriter | None = None


async def sse_client(client: SseClient, port: int, path: str, stop: asyncio.Event,
                     connect_timeout: float) -> None:
    """GET an SSE stream and record when each event id arrives (until ``stop``)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                connect_timeout)
        client.writer = writer
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), connect_timeout)
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            client.error = f"HTTP {status}"
            return
        chunked = b"transfer-encoding: chunked" in head.lower()
        raw = bytearray()   # bytes from the socket, still chunk-framed
        body = bytearray()  # de-chunked SSE text
        while not stop.is_set():
            data = await reader.read(READ_SIZE)
            now = time.time()
            if not data:
                client.closed = True
                return
            if chunked:
                raw += data
                while True:
                    eol = raw.find(b"\r\n")
                    if eol < 0:
                        break
                    size = int(raw[:eol].split(b";")[0], 16)
                    if size == 0:
                        client.closed = True
                        return
                    if len(raw) < eol + 2 + size + 2:
                        break
                    body += raw[eol + 2:eol + 2 + size]
                    del raw[:eol + 2 + size + 2]
            else:
                body += data
            while True:
                end = body.find(b"\r\n\r\n")
                if end < 0:
                    break
                block = bytes(body[:end])
                del body[:end + 4]
                for line in block.split(b"\r\n"):
                    if line.startswith(b"id: "):
                        entry = line[4:].decode()
                        client.received.setdefault(entry, now)
                        client.first.set()
                        break
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        client.error = f"{type(exc).__name__}: {exc}"
    finally:
        client.first.set()  # never leave the bench waiting on a dead client
        if client.writer is not None:
            client.writer.close()


def publisher(redis_url: str, payload: dict[str, Any], topics: list[str], count: int,
              interval: float, out: Any) -> None:
    """In a child process: XADD ``count`` job events ``interval`` apart; send back id → time."""
    async def main() -> None:
        from jobs.engine import redis_client
        from jobs.events import EventBus

        redis = redis_client(redis_url)
        bus = EventBus(redis)
        sent: dict[str, float] = {}
        cpu0 = time.process_time()
        start = time.monotonic()
        try:
            for i in range(1, count + 1):
                due = start + i * interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                data = json.loads(json.dumps(payload))
                data["progress"].update({"done": i, "total": count, "phase": f"bench event {i}"})
                t = time.time()
                entry = await bus.publish("job", topics, data)
                sent[entry] = t
        finally:
            await redis.aclose()
        out.send({"sent": sent, "cpu": time.process_time() - cpu0})

    try:
        run(main())
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; the parent reports it
        pass


def wait_rss_settle(pid: int, seconds: float = 1.0) -> int:
    time.sleep(seconds)
    return rss_bytes(pid)


async def bench(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    web_pid = stack.proc.pid  # type: ignore[union-attr]
    job_id = stack.submit("diagnostics.noop")
    payload = stack.job(job_id)
    payload.pop("log", None)
    topic = f"job:{job_id}" if args.topic == "job" else "jobs"
    path = f"/events?topic={topic}"
    redis_url = f"unix://{(stack.data_dir / 'redis.sock').resolve()}"
    stop = asyncio.Event()

    # one client first, so that lazy imports, templates and pools are warm before measuring
    warm = SseClient(-1)
    warm_task = asyncio.create_task(sse_client(warm, stack.port, path, stop, 10))
    await asyncio.wait_for(warm.first.wait(), 10)
    warm_task.cancel()
    await asyncio.gather(warm_task, return_exceptions=True)
    rss_before = await asyncio.to_thread(wait_rss_settle, web_pid, 1.0)

    clients = [SseClient(i) for i in range(args.clients)]
    tasks: list[asyncio.Task[None]] = []
    t_connect = time.perf_counter()
    web_cpu0 = cpu_seconds(web_pid)
    for start in range(0, len(clients), args.connect_batch):
        batch = clients[start:start + args.connect_batch]
        tasks += [asyncio.create_task(sse_client(c, stack.port, path, stop, args.connect_timeout))
                  for c in batch]
        await asyncio.wait_for(asyncio.gather(*(c.first.wait() for c in batch)), args.connect_timeout)
    connect_s = time.perf_counter() - t_connect
    connect_cpu = cpu_seconds(web_pid) - web_cpu0
    failed = [c for c in clients if c.error or c.closed]
    rss_after = await asyncio.to_thread(wait_rss_settle, web_pid, 1.0)
    print(f"# {len(clients) - len(failed)}/{len(clients)} clients connected in {connect_s:.1f} s", flush=True)

    # loop-lag probe: how late this (client) process's event loop wakes up during the run
    lags: list[float] = []

    async def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t - 0.01)

    probe_task = asyncio.create_task(probe())
    parent, child = mp.Pipe(duplex=False)
    pub = mp.get_context("spawn").Process(
        target=publisher, args=(redis_url, payload, ["jobs", f"job:{job_id}"], args.events,
                                args.interval, child), daemon=True)
    web_cpu0, my_cpu0 = cpu_seconds(web_pid), time.process_time()
    sched0 = sched_seconds(web_pid)
    t_pub = time.perf_counter()
    spy = None
    if args.profile:
        spy = py_spy_start(web_pid, stack.data_dir / "web.pyspy", args.events * args.interval)
    pub.start()
    try:
        result = await _recv(parent, args.events * args.interval + 60)
        # wait (bounded) for the last events to reach every client
        deadline = time.monotonic() + args.drain
        sent: dict[str, float] = result["sent"]
        while time.monotonic() < deadline:
            if all(len(sent.keys() & c.received.keys()) == len(sent) for c in clients if not c.error):
                break
            await asyncio.sleep(0.05)
    finally:
        pub.join(5)
        if pub.is_alive():
            pub.terminate()
    publish_s = time.perf_counter() - t_pub
    sched1 = sched_seconds(web_pid)
    web_run, web_wait = sched1[0] - sched0[0], sched1[1] - sched0[1]
    profile = None
    if spy is not None:
        await asyncio.to_thread(spy.wait, 60)
        profile = summarize_py_spy(stack.data_dir / "web.pyspy")
    web_cpu = cpu_seconds(web_pid) - web_cpu0
    my_cpu = time.process_time() - my_cpu0
    rss_end = rss_bytes(web_pid)
    stop.set()
    probe_task.cancel()
    for c in clients:
        if c.writer is not None:
            c.writer.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, probe_task, return_exceptions=True)

    latencies: list[float] = []
    per_client_p99: list[float] = []
    first_rx: list[float] = []  # per event: publish -> the first client has it
    last_rx: list[float] = []   # per event: publish -> the last client has it
    for entry, t in sent.items():
        got = [c.received[entry] for c in clients if entry in c.received]
        if got:
            first_rx.append(min(got) - t)
            last_rx.append(max(got) - t)
    lost = 0
    for c in clients:
        mine = []
        for entry, t in sent.items():
            got = c.received.get(entry)
            if got is None:
                lost += 1
            else:
                mine.append(got - t)
        latencies += mine
        if mine:
            mine.sort()
            per_client_p99.append(mine[min(len(mine) - 1, int(len(mine) * 0.99))])
    return {"first_rx": first_rx, "last_rx": last_rx,
            "latencies": latencies, "per_client_p99": per_client_p99, "lost": lost,
            "expected": len(sent) * len(clients), "failed": failed, "connect_s": connect_s,
            "connect_cpu": connect_cpu, "rss_before": rss_before, "rss_after": rss_after,
            "rss_end": rss_end, "web_cpu": web_cpu, "client_cpu": my_cpu,
            "pub_cpu": result["cpu"], "publish_s": publish_s, "lags": lags, "events": len(sent),
            "topic": topic, "profile": profile, "web_run": web_run, "web_wait": web_wait}


async def _recv(conn: Any, limit_s: float) -> dict[str, Any]:
    """The publisher's report, polled without a blocking thread (Ctrl-C must not wait for it)."""
    deadline = time.monotonic() + limit_s
    while not conn.poll():
        if time.monotonic() > deadline:
            raise TimeoutError("the publisher sent nothing back")
        await asyncio.sleep(0.05)
    return conn.recv()  # type: ignore[no-any-return]


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    n = args.clients
    print(f"\n## SSE fan-out: {n} clients on one web process, {r['events']} events "
          f"{args.interval * 1000:g} ms apart, topic {args.topic!r}\n")
    print(machine_line() + f"; load average now: {os.getloadavg()[0]:.2f}")
    print("clients: raw asyncio sockets in one process (uvloop); publisher: EventBus.publish (XADD) "
          "in another process; web, Redis, clients and publisher share the cores\n")
    lat = r["latencies"]
    print(md_table(["deliveries", "p50 ms", "p95 ms", "p99 ms", "max ms", "lost", "clients failed"],
                   [[len(lat), *latency_cells(lat), r["lost"], len(r["failed"])]]))
    print("\nper event: when the first and the last of the clients had it (the spread is the time "
          "the web process needs to write one event to every client):\n")
    spread = [b - a for a, b in zip(r["first_rx"], r["last_rx"], strict=True)]
    print(md_table(["per event", "p50 ms", "p95 ms", "p99 ms", "max ms"], [
        ["publish → first client", *latency_cells(r["first_rx"])],
        ["publish → last client", *latency_cells(r["last_rx"])],
        ["first → last client (spread)", *latency_cells(spread)],
    ]))
    mib = 1024 * 1024
    per_client = (r["rss_after"] - r["rss_before"]) / max(n - len(r["failed"]), 1)
    print()
    print(md_table(["measure", "value"], [
        ["web RSS before clients", f"{r['rss_before'] / mib:.1f} MiB"],
        [f"web RSS with {n} clients connected", f"{r['rss_after'] / mib:.1f} MiB"],
        ["web RSS after the events", f"{r['rss_end'] / mib:.1f} MiB"],
        ["memory per client", f"{per_client / 1024:.1f} KiB"],
        [f"time to connect {n} clients (batches of {args.connect_batch})",
         f"{r['connect_s']:.2f} s (web CPU {r['connect_cpu']:.2f} s = "
         f"{r['connect_cpu'] / n * 1e3:.2f} ms per connect)"],
        ["web CPU during the events", f"{r['web_cpu']:.2f} s = "
         f"{r['web_cpu'] / max(r['events'] * n, 1) * 1e6:.0f} µs per delivery"],
        ["client-process CPU during the events", f"{r['client_cpu']:.2f} s = "
         f"{r['client_cpu'] / max(r['events'] * n, 1) * 1e6:.0f} µs per delivery"],
        ["publisher CPU", f"{r['pub_cpu']:.2f} s"],
        ["web event-loop thread: on a CPU / runnable but waiting for one",
         f"{r['web_run']:.2f} s / {r['web_wait']:.2f} s of {r['publish_s']:.1f} s"],
        ["client loop lag (10 ms timer) p50 / p99 / max",
         " / ".join(f"{v * 1e3:.1f} ms" for v in (
             *(sorted(r["lags"])[int(len(r["lags"]) * q)] for q in (0.5, 0.99)),
             max(r["lags"]))) if r["lags"] else "—"],
        ["per-client p99, worst client", f"{max(r['per_client_p99'], default=float('nan')) * 1e3:.1f} ms"],
    ]))
    if r.get("profile"):
        print("\n### py-spy of the web process during the events\n\n```\n" + r["profile"] + "\n```")
    for c in r["failed"][:3]:
        print(f"failed client {c.index}: {c.error or 'closed by server'}")
    verdict = "meets" if lat and sorted(lat)[int(len(lat) * 0.99) - 1] < 0.25 else "misses"
    print(f"\ntarget: p99 < 250 ms, 0 lost — {verdict} the latency target; lost {r['lost']} "
          f"of {r['expected']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between events")
    parser.add_argument("--topic", choices=["job", "jobs"], default="job",
                        help="subscribe to job:<id> (default) or the jobs list")
    parser.add_argument("--connect-batch", type=int, default=100,
                        help="connect this many clients at once, then wait for their first event")
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--profile", action="store_true",
                        help="sample the web process with py-spy during the events")
    parser.add_argument("--drain", type=float, default=10.0,
                        help="after the last publish, wait at most this long for deliveries")
    args = parser.parse_args()
    sigterm_as_exit()
    soft, hard = raise_nofile(args.clients * 2 + 256)  # the web process inherits it too
    if soft < args.clients + 64:
        sys.exit(f"open-files limit {soft} (hard {hard}) is too low for {args.clients} clients")
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        stack = Stack(Path(tmp), workers=0, env={"MARKETDESK_MAX_QUEUED": "1000"})
        run_with_stack(stack, lambda: report(run(bench(stack, args)), args), f"; ulimit -n {soft}")


if __name__ == "__main__":
    main()
