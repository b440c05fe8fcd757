"""The bare stack's floor: what Litestar on uvicorn (httptools, uvloop; the same stack marketdesk
runs on) answers at 50 concurrent keep-alive clients on this machine when the handler does
nothing but return bytes held in memory, with 1 and 2 processes sharing the port.

Read beside request_path.py, symbols.py and contracts.py: an endpoint of ours cannot beat the
floor of the framework serving it, so a latency target below the floor is a target for the
machine, not for the code. wrk drives the load (C, 2 threads) on the same two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from _common import ROOT, machine_line, md_table, run, wait_answers
from litestar import Litestar, Response, get
from request_path import load_wrk

from tests.stack import free_port, listening_sockets

SIZES = {"tiny": 2 * 1024, "big": 302 * 1024}


def serve(port: int) -> None:
    """One bare web process: GET /tiny and /big answer constant JSON bytes."""
    import uvicorn

    from web.cli import _shared_socket

    bodies = {name: json.dumps({"pad": "x" * (size - 12)}).encode() for name, size in SIZES.items()}

    @get("/tiny", sync_to_thread=False)
    def tiny() -> Response[bytes]:
        return Response(bodies["tiny"], media_type="application/json")

    @get("/big", sync_to_thread=False)
    def big() -> Response[bytes]:
        return Response(bodies["big"], media_type="application/json")

    app = Litestar([tiny, big])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http="httptools",
                            loop="uvloop", lifespan="off")
    uvicorn.Server(config).run(sockets=[_shared_socket("127.0.0.1", port)])


def measure(processes: int, clients: int, duration: float) -> list[list[object]]:
    port = free_port()
    procs = [subprocess.Popen([sys.executable, __file__, "--serve", str(port)], cwd=ROOT)
             for _ in range(processes)]
    rows: list[list[object]] = []
    try:
        wait_answers(f"http://127.0.0.1:{port}/tiny")
        deadline = time.monotonic() + 20  # every process listening before the connections open
        while listening_sockets(port) < processes and time.monotonic() < deadline:
            time.sleep(0.1)
        with tempfile.TemporaryDirectory() as tmp:
            target = SimpleNamespace(url=f"http://127.0.0.1:{port}", data_dir=Path(tmp))
            for name in SIZES:
                r = run(load_wrk(target, f"GET /{name}", "GET", f"/{name}", None, {200}, clients,
                                 duration, 1.0, None))
                rows.append([f"{processes}", f"{SIZES[name] // 1024} KiB", r.requests,
                             f"{r.requests / r.duration:.0f}", *(r.cells or []), r.errors,
                             f"{r.cpu.get('load generator', 0):.1f}"])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    rows = [row for n in args.processes for row in measure(n, args.clients, args.duration)]
    print(f"## The bare stack's floor: {args.clients} keep-alive clients (wrk), {args.duration:g} s "
          "per row, constant bytes from memory\n")
    print(machine_line() + f"; load average {os.getloadavg()[0]:.2f} at the end\n")
    print(md_table(["web processes", "answer", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms",
                    "max ms", "errors", "wrk CPU s"], rows))


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
