"""Simulations: the trigger under load, and model-days per second with prices already stored.

1. Trigger under load: N concurrent keep-alive clients POST /simulate/trigger for D seconds.
   Only one simulation may be pending or running, so after the first the others are refused
   with 400 "Another simulation job is already running or pending" - having gone through the
   same validation, model resolution and database checks; then, one after another, triggers
   that succeed (each cancelled at once so the next may start) give the full path's latency.
2. Throughput: 3 models x 20 symbols x 1 year of trading days (MARKETDESK_MAX_SIMULATION_DAYS
   raised), prices already stored (the demo data `marketdesk serve` seeds): time from trigger to
   completed, the running phase, and model-days per second.
3. Reading that year's results, one request after another: a page of GET /results, the whole
   GET /results.csv, GET /simulate/status (with the run's metrics), the equity.csv and the job
   page (chart and metrics rendered).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from _common import latency_cells, machine_line, md_table, run, sigterm_as_exit, stop_stack
from request_path import load

from tests.stack import Stack


def yesterday() -> datetime:
    return datetime.now(UTC) - timedelta(days=1)


def sequential_triggers(stack: Stack, count: int) -> list[float]:
    samples = []
    end = yesterday().date()
    body = {"start_date": (end - timedelta(days=13)).isoformat(), "end_date": end.isoformat()}
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        for _ in range(count):
            t0 = time.perf_counter()
            r = client.post("/simulate/trigger", json=body)
            samples.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            client.post(f"/api/jobs/{r.json()['job_id']}/cancel")  # pending: cancelled at once
            stack.wait(r.json()["job_id"], timeout=30)  # unless a worker took it first: it stops soon
    return samples


def throughput(stack: Stack, days: int) -> dict[str, float]:
    end = yesterday().date()
    body = {"start_date": (end - timedelta(days=days - 1)).isoformat(), "end_date": end.isoformat(),
            "replace_existing": True}
    t0 = time.perf_counter()
    r = httpx.post(f"{stack.url}/simulate/trigger", json=body, timeout=10)
    assert r.status_code == 200, r.text
    job = stack.wait(r.json()["job_id"], timeout=600)
    wall = time.perf_counter() - t0
    assert job["status"] == "completed", job
    status = httpx.get(f"{stack.url}/simulate/status/{job['id']}", timeout=30).json()
    model_days = status["progress"]["completed"]
    running = [d["duration_seconds"] for d in status["details"] if d["duration_seconds"] is not None]
    started = datetime.fromisoformat(job["started_at"])
    finished = datetime.fromisoformat(job["finished_at"])
    worker = (finished - started).total_seconds()
    return {"job_id": job["id"], "model_days": model_days, "dates": len(status["date_range"]), "wall": wall,
            "worker": worker, "per_s": model_days / worker, "step_ms": statistics.mean(running) * 1000}


def reading(stack: Stack, job_id: str, count: int) -> list[list[str]]:
    paths = [("GET /results (100 of the run)", f"/results?job_id={job_id}&limit=100"),
             ("GET /results.csv (the whole run)", f"/results.csv?job_id={job_id}"),
             ("GET /simulate/status", f"/simulate/status/{job_id}"),
             ("GET equity.csv", f"/simulations/{job_id}/equity.csv"),
             ("GET /jobs/{id} (the job page)", f"/jobs/{job_id}")]
    rows = []
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for label, path in paths:
            samples, size = [], 0
            for _ in range(count):
                t0 = time.perf_counter()
                r = client.get(path)
                samples.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text[:300]
                size = len(r.content)
            rows.append([label, f"{size / 1024:.0f}", *latency_cells(samples)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--sequential", type=int, default=100, help="successful triggers, one by one")
    parser.add_argument("--days", type=int, default=365, help="calendar days for the throughput run")
    parser.add_argument("--reads", type=int, default=20, help="requests per row of the reading table")
    args = parser.parse_args()
    sigterm_as_exit()
    tmp = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    env = {"MARKETDESK_MAX_SIMULATION_DAYS": str(max(args.days, 30)),
           "MARKETDESK_MAX_QUEUED": "1000000"}
    stack = Stack(tmp / "stack", env=env, demo=True)
    interrupted = False
    try:
        print("# starting the stack (seeds the demo prices: 20 tickers, two years)", flush=True)
        stack.start(timeout=180)
        end = yesterday().date()
        body = json.dumps({"start_date": (end - timedelta(days=13)).isoformat(),
                           "end_date": end.isoformat()}).encode()
        res = run(load(stack, "POST /simulate/trigger", "POST", "/simulate/trigger", body, {200, 400},
                       "raw", args.clients, args.duration, None, 1.0, 10**9, None))
        # let the one simulation that was accepted finish before measuring alone
        for job in httpx.get(f"{stack.url}/api/jobs?kind=simulation.run&limit=200").json()["jobs"]:
            stack.wait(job["id"], timeout=120)
        seq = sequential_triggers(stack, args.sequential)
        tp = throughput(stack, args.days)
        reads = reading(stack, tp["job_id"], args.reads)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        for line in stop_stack(stack, interrupted):
            print(line)
    print(f"\n## Simulations\n\n{machine_line()}\n")
    print(f"### Trigger under load: {args.clients} clients, {args.duration:.0f} s (target p99 < 50 ms)\n")
    codes = res.statuses
    print(md_table(["requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "answers"],
                   [[len(res.latencies), f"{len(res.latencies) / res.duration:.0f}",
                     *latency_cells(res.latencies), json.dumps(codes)]]))
    print(f"\n### Successful triggers, one after another ({args.sequential})\n")
    print(md_table(["p50 ms", "p95 ms", "p99 ms", "max ms"], [latency_cells(seq)]))
    print(f"\n### Throughput: 3 models x 20 symbols x {tp['dates']:.0f} trading days, prices stored\n")
    print(md_table(["model-days", "trigger→completed s", "worker s", "model-days/s", "ms per model-day"],
                   [[f"{tp['model_days']:.0f}", f"{tp['wall']:.2f}", f"{tp['worker']:.2f}",
                     f"{tp['per_s']:.0f}", f"{tp['step_ms']:.2f}"]]))
    print(f"\n### Reading that run's results, one request after another ({args.reads} each)\n")
    print(md_table(["request", "KiB", "p50 ms", "p95 ms", "p99 ms", "max ms"], reads))


if __name__ == "__main__":
    main()
