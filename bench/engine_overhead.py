"""Engine overhead: N no-op jobs through our worker wrapper vs bare arq, same Redis, same run.

In this one process: an EmbeddedRedis on a unix socket and a migrated SQLite database in a
temp dir. Submits N ``diagnostics.noop`` jobs with jobs.queue.submit (timed: the submit rate),
drains them with one worker from jobs.worker.build_worker(engine, burst=True), then enqueues N
jobs of a trivial ``async def noop(ctx)`` straight into arq and drains them with a bare arq
Worker with the same max_jobs / poll_delay / keep_result. Prints jobs/s for both, the ratio,
and what our wrapper does per job: SQL statements, commits, Redis commands, and where the
time goes (each engine step is timed by a thin wrapper installed in this process only).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from _common import cpu_seconds, machine_line, md_table, run, sigterm_as_exit

from jobs import queue, store
from jobs import worker as jobs_worker
from jobs.engine import Engine, redis_client
from jobs.migrate import upgrade
from jobs.redis_embedded import EmbeddedRedis
from jobs.settings import Settings


# -- per-step timing ---------------------------------------------------------------------------
class StepTimer:
    """Wraps engine functions to sum their wall time and calls (restored afterwards)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._undo: list[tuple[Any, str, Any]] = []
        self.enabled = False

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)
        timer = self

        async def timed(*args: Any, **kwargs: Any) -> Any:
            if not timer.enabled:
                return await original(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                timer.total[label] += time.perf_counter() - t0
                timer.calls[label] += 1

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


def install_timers() -> StepTimer:
    t = StepTimer()
    t.wrap(jobs_worker, "run_job", "run_job (the whole wrapper)")
    t.wrap(store, "get_job", "  store.get_job (SELECT)")
    t.wrap(store, "claim", "  store.claim (UPDATE … RETURNING + COMMIT)")
    t.wrap(jobs_worker, "_execute", "  _execute (validate params, tasks, the job function)")
    t.wrap(store, "finish_job", "  store.finish_job (UPDATE … RETURNING + INSERT log + COMMIT)")
    t.wrap(Engine, "publish", "  engine.publish (XADD, pipelined when several)")
    t.wrap(Engine, "log", "  engine.log (INSERT log + COMMIT, XADD)")
    return t


class SqlCounter:
    """Counts the statements, commits and connections of the process's SQLite writer (every
    statement, prepared ones on the driver's cursor too: SQLite's own trace callback)."""

    def __init__(self, engine: Engine) -> None:
        from sqlalchemy import event

        self.statements: Counter[str] = Counter()
        self.commits = 0
        self.connects = 0
        self.enabled = False
        writer = engine.db._lite().writer.engine  # before its connection is made

        def trace(statement: str) -> None:
            if self.enabled:
                self.statements[statement.split(None, 1)[0].upper()] += 1

        @event.listens_for(writer, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.set_trace_callback(trace)
            if self.enabled:
                self.connects += 1

        @event.listens_for(writer, "commit")
        def _commit(conn: Any) -> None:
            if self.enabled:
                self.commits += 1


class HopCounter:
    """Counts store writes (``Database.run``) and hand-offs to the writer thread: writes
    asked for together go over, and commit, together (group commit)."""

    def __init__(self) -> None:
        from jobs import db

        self.count = 0
        self.hand_offs = 0
        self.enabled = False
        self._module = db
        self._write, self._batch = db._SQLite.write, db._write_batch
        counter, write, batch = self, self._write, self._batch

        def counted_write(lite: Any, *args: Any) -> Any:
            if counter.enabled:
                counter.count += 1
            return write(lite, *args)

        def counted_batch(*args: Any) -> Any:
            if counter.enabled:
                counter.hand_offs += 1
            return batch(*args)

        db._SQLite.write = counted_write  # type: ignore[method-assign]
        db._write_batch = counted_batch

    def restore(self) -> None:
        self._module._SQLite.write = self._write  # type: ignore[method-assign]
        self._module._write_batch = self._batch


async def commandstats(redis: Any) -> Counter[str]:
    info = await redis.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()})


# -- the runs ---------------------------------------------------------------------------------
async def submit_all(engine: Engine, n: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    left = [n]

    async def one_client() -> None:
        while left[0] > 0:
            left[0] -= 1
            t0 = time.perf_counter()
            await queue.submit(engine, "diagnostics.noop", {})
            latencies.append(time.perf_counter() - t0)

    t = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return time.perf_counter() - t, latencies


async def run_ours(settings: Settings, url: str, args: argparse.Namespace, redis_pid: int,
                   instrument: bool) -> dict[str, Any]:
    """One run of our worker on a fresh database. ``instrument``: count statements, hand-offs
    and Redis commands and time each step (which costs time itself, so the jobs/s compared
    with bare arq come from a run without it)."""
    upgrade(settings.resolved_database_url)
    engine = Engine(settings, url)
    sql = SqlCounter(engine) if instrument else None
    out: dict[str, Any] = {}
    try:
        submit_s, submit_lat = await submit_all(engine, args.jobs, args.submit_concurrency)
        out["submit_s"], out["submit_lat"] = submit_s, submit_lat
        timers = install_timers() if instrument else None
        hops = HopCounter() if instrument else None
        worker = jobs_worker.build_worker(engine, burst=True, max_jobs=args.max_jobs,
                                          poll_delay=args.poll_delay, handle_signals=False)
        before_cmds = await commandstats(engine.redis)
        cpu0, rcpu0 = time.process_time(), cpu_seconds(redis_pid)
        if sql and timers and hops:
            sql.enabled = timers.enabled = hops.enabled = True
        profiler = cProfile.Profile() if args.profile and instrument else None
        t = time.perf_counter()
        try:
            if profiler:
                profiler.enable()
            await asyncio.wait_for(worker.async_run(), args.timeout)
        finally:
            if profiler:
                profiler.disable()
            out["wall"] = time.perf_counter() - t
            out["cpu"] = time.process_time() - cpu0
            out["redis_cpu"] = cpu_seconds(redis_pid) - rcpu0
            if sql and timers and hops:
                sql.enabled = timers.enabled = hops.enabled = False
                timers.restore()
                hops.restore()
            # close() runs on_shutdown and closes the pool it was given: engine.redis
            await worker.close()
        probe = redis_client(url)
        try:
            out["cmds"] = await commandstats(probe) - before_cmds
            out["cmds"]["info"] = 0
        finally:
            await probe.aclose()
        if sql and timers and hops:
            out["sql"], out["commits"] = sql.statements, sql.commits
            out["connects"], out["hops"] = sql.connects, hops.count
            out["hand_offs"] = hops.hand_offs
            out["timers"] = (dict(timers.total), dict(timers.calls))
        counts = (await store.overview(engine.db))["counts"]
        out["completed"] = counts.get("completed", 0)
        out["not_completed"] = {k: v for k, v in counts.items() if v and k != "completed"}
        from sqlalchemy import func, select

        first, last = await engine.db.run(lambda conn: conn.execute(
            select(func.min(store.JOB.c.started_at), func.max(store.JOB.c.finished_at))).one())
        if first and last:
            out["span"] = (last - first).total_seconds()
        if profiler:
            buf = io.StringIO()
            sort = os.environ.get("BENCH_PROFILE_SORT", "tottime")
            top = int(os.environ.get("BENCH_PROFILE_TOP", "25"))
            pstats.Stats(profiler, stream=buf).sort_stats(sort).print_stats(top)
            out["profile"] = buf.getvalue()
    finally:
        await engine.db.dispose()
        await engine.redis.aclose()
    return out


async def run_bare(url: str, args: argparse.Namespace, redis_pid: int) -> dict[str, Any]:
    from arq import Worker
    from arq.worker import func

    calls: list[float] = []

    async def noop(ctx: dict[str, Any]) -> None:
        calls.append(time.perf_counter())
        return None

    pool = redis_client(url)
    out: dict[str, Any] = {}
    try:
        t = time.perf_counter()
        for _ in range(args.jobs):
            await pool.enqueue_job("noop")
        out["submit_s"] = time.perf_counter() - t
        worker = Worker(functions=[func(noop, name="noop", max_tries=1)],  # type: ignore[arg-type]
                        redis_pool=pool, burst=True, max_jobs=args.max_jobs,
                        poll_delay=args.poll_delay, keep_result=0, handle_signals=False,
                        job_timeout=timedelta(days=1), health_check_interval=30)
        before_cmds = await commandstats(pool)
        cpu0, rcpu0 = time.process_time(), cpu_seconds(redis_pid)
        t = time.perf_counter()
        try:
            await asyncio.wait_for(worker.async_run(), args.timeout)
        finally:
            out["wall"] = time.perf_counter() - t
            out["cpu"] = time.process_time() - cpu0
            out["redis_cpu"] = cpu_seconds(redis_pid) - rcpu0
            await worker.close()  # closes pool
        probe = redis_client(url)
        try:
            out["cmds"] = await commandstats(probe) - before_cmds
            out["cmds"]["info"] = 0
        finally:
            await probe.aclose()
        out["completed"] = len(calls)
        if len(calls) > 1:
            out["span"] = calls[-1] - calls[0]
    finally:
        await pool.aclose()
    return out


async def bench(tmp: Path, url: str, args: argparse.Namespace, redis_pid: int
                ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    def settings(name: str) -> Settings:
        return Settings(data_dir=tmp / name, max_queued=10**9, redis_url=url, database_url=None)

    print(f"# ours: submitting {args.jobs} diagnostics.noop jobs, then one burst worker", flush=True)
    ours = await run_ours(settings("ours"), url, args, redis_pid, instrument=False)
    print(f"# bare arq: enqueueing {args.jobs} noop jobs, then one burst worker", flush=True)
    bare = await run_bare(url, args, redis_pid)
    print("# ours again, instrumented: what each job does and where the time goes", flush=True)
    counted = await run_ours(settings("counted"), url, args, redis_pid, instrument=True)
    return ours, bare, counted


def report(ours: dict[str, Any], bare: dict[str, Any], counted: dict[str, Any],
           args: argparse.Namespace) -> None:
    n = args.jobs
    print(f"\n## Engine overhead: {n} no-op jobs, one worker (max_jobs={args.max_jobs}, "
          f"poll_delay={args.poll_delay:g} s), embedded Redis, SQLite\n")
    print(machine_line() + f"; load average at start: {os.getloadavg()[0]:.2f}\n")
    rows = []
    for name, r in (("ours: build_worker + run_job", ours), ("bare arq Worker, async noop", bare)):
        rows.append([name, r["completed"], f"{r['wall']:.2f}", f"{r['completed'] / r['wall']:.0f}",
                     f"{r['completed'] / r['span']:.0f}" if r.get("span") else "—",
                     f"{r['cpu'] / max(r['completed'], 1) * 1e3:.2f}",
                     f"{r['redis_cpu'] / max(r['completed'], 1) * 1e3:.2f}",
                     f"{n / r['submit_s']:.0f}"])
    print(md_table(["worker", "jobs done", "wall s", "jobs/s (wall)", "jobs/s (first start→last end)",
                    "worker CPU ms/job", "redis CPU ms/job", "submits/s"], rows))
    ratio = (ours["completed"] / ours["wall"]) / (bare["completed"] / bare["wall"])
    verdict = "meets" if ratio >= 0.5 else "misses"
    print(f"\nratio ours / bare (jobs/s, wall): **{ratio:.2f}** — {verdict} the target ≥ 0.5")
    print(f"CPU per job: ours {ours['cpu'] / n * 1e3:.2f} ms vs bare {bare['cpu'] / n * 1e3:.2f} ms "
          f"(×{ours['cpu'] / max(bare['cpu'], 1e-9):.1f})")
    if ours["not_completed"]:
        print(f"WARNING: not every job completed: {ours['not_completed']}")
    lat = ours["submit_lat"]
    from _common import percentile

    print(f"\nsubmit: {n} × jobs.queue.submit with {args.submit_concurrency} concurrent caller(s): "
          f"{ours['submit_s']:.2f} s = {n / ours['submit_s']:.0f} submits/s; latency p50 "
          f"{percentile(lat, 50) * 1e3:.2f} ms, p99 {percentile(lat, 99) * 1e3:.2f} ms "
          f"(bare arq enqueue_job: {n / bare['submit_s']:.0f}/s)")

    print(f"\n### What our worker does per job (a second, instrumented run: "
          f"{counted['completed'] / counted['wall']:.0f} jobs/s with the counters on)\n")
    sql_rows = [[f"SQL {k}", f"{v / n:.2f}"] for k, v in sorted(counted["sql"].items())]
    sql_rows.append(["SQL COMMIT (writes asked for together share one)",
                     f"{counted['commits'] / n:.2f}"])
    sql_rows.append(["store writes", f"{counted['hops'] / n:.2f}"])
    sql_rows.append(["hand-offs to the writer thread (one per commit)",
                     f"{counted['hand_offs'] / n:.2f}"])
    sql_rows.append(["new SQLite connections opened", f"{counted['connects'] / n:.2f}"])
    cmd_names = sorted(set(counted["cmds"]) | set(bare["cmds"]),
                       key=lambda c: -(counted["cmds"].get(c, 0) + bare["cmds"].get(c, 0)))
    cmd_rows = [[f"Redis {c.upper()}", f"{counted['cmds'].get(c, 0) / n:.2f}",
                 f"{bare['cmds'].get(c, 0) / n:.2f}"]
                for c in cmd_names if counted["cmds"].get(c, 0) or bare["cmds"].get(c, 0)]
    print(md_table(["operation", "ours per job", "bare per job"],
                   [[a, b, "0"] for a, b in sql_rows] + cmd_rows
                   + [["Redis commands, total", f"{sum(counted['cmds'].values()) / n:.1f}",
                       f"{sum(bare['cmds'].values()) / n:.1f}"]]))
    totals, calls = counted["timers"]
    print(f"\nwall time per call inside the worker (summed over {args.max_jobs} concurrent jobs, so "
          "waiting for the SQLite write lock and the event loop is included):\n")
    rows = [[label, calls.get(label, 0), f"{calls.get(label, 0) / n:.1f}",
             f"{totals[label] / max(calls.get(label, 1), 1) * 1e3:.2f}",
             f"{totals[label] / n * 1e3:.2f}"] for label in totals]
    print(md_table(["step", "calls", "per job", "ms per call", "ms per job"], rows))
    if counted.get("profile"):
        print("\n### cProfile of the worker run (top 25 by own time)\n")
        print("```\n" + counted["profile"].strip() + "\n```")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per run (default 2000)")
    parser.add_argument("--max-jobs", type=int, default=10, help="worker concurrency (both workers)")
    parser.add_argument("--poll-delay", type=float, default=0.05,
                        help="arq poll delay, both workers (default 0.05, build_worker's)")
    parser.add_argument("--submit-concurrency", type=int, default=1,
                        help="concurrent submit() callers (default 1: one after another)")
    parser.add_argument("--timeout", type=float, default=120.0, help="cap per worker run, seconds")
    parser.add_argument("--profile", action="store_true", help="cProfile our worker run")
    args = parser.parse_args()
    sigterm_as_exit()
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        try:
            url = redis.start()
            assert redis.process is not None
            ours, bare, counted = run(bench(Path(tmp), url, args, redis.process.pid))
            report(ours, bare, counted, args)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
