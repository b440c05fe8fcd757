"""The database layer: prepared statements read and write what SQLAlchemy would, on each
database; a worker's slots refill as they free; events keep their order."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from jobs import store
from jobs.db import Database, Prepared
from jobs.events import EventBus, read_after
from jobs.models import Job
from jobs.redis_embedded import EmbeddedRedis


async def test_prepared_statements_read_and_write_what_sqlalchemy_would(db: Database) -> None:
    at = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    job = Job(id="p" * 32, kind="diagnostics.noop", params={"a": [1, "b"], "n": None},
              warnings=["w1"], result={"x": 1.5}, created_at=at, updated_at=at, started_at=at)
    assert await store.insert_job(db, job, 5) is None  # written through a Prepared INSERT

    select = sa.select(*[store.JOB.c[name] for name in ("id", "params", "warnings", "result",
                                                        "created_at", "finished_at", "attempts")])
    prepared = Prepared(select.where(store.JOB.c.id == sa.bindparam("job_id")))
    ours = await db.run(lambda conn: prepared.rows(conn, {"job_id": job.id}))
    theirs = await db.run(lambda conn: [tuple(r) for r in conn.execute(
        select.where(store.JOB.c.id == job.id))])
    assert ours == theirs == [(job.id, {"a": [1, "b"], "n": None}, ["w1"], {"x": 1.5}, at, None, 0)]
    assert ours[0][4].tzinfo is not None  # aware UTC, like every timestamp we hand out


async def test_a_prepared_statement_converts_generic_types_as_the_dialect_does(db: Database) -> None:
    """A plain ``sa.Date`` has no converter of its own: SQLite's DATE type does (text to date).
    A prepared read must use the dialect's, or it hands back strings where SQLAlchemy gives dates."""
    from jobs.contracts import store as cstore

    day = datetime(2026, 1, 5, tzinfo=UTC).date()
    scan = cstore.Scan("SHFE.cu2601", 1, 1, day, day, b"\x01", ("2026-01-06",))
    await cstore.save_scans(db, "v-prepared", [scan], [], datetime.now(UTC))
    select = sa.select(cstore.SCAN.c.first_date, cstore.SCAN.c.no_data).where(
        cstore.SCAN.c.lake_version == sa.bindparam("version"))
    ours = await db.run(lambda conn: Prepared(select).rows(conn, {"version": "v-prepared"}))
    theirs = await db.run(lambda conn: [tuple(r) for r in conn.execute(select, {"version": "v-prepared"})])
    assert ours == theirs == [(day, ["2026-01-06"])]


async def test_a_prepared_statement_refuses_a_missing_parameter(db: Database) -> None:
    prepared = Prepared(sa.update(store.JOB).where(store.JOB.c.id == sa.bindparam("job_id"))
                        .values(phase=sa.bindparam("phase")))
    await store.insert_job(db, Job(id="q" * 32, kind="diagnostics.noop", phase="before"), 5)
    with pytest.raises(sa.exc.SQLAlchemyError, match="required for bind parameter 'phase'"):
        await db.run(lambda conn: prepared.rowcount(conn, {"job_id": "q" * 32}))
    assert (await store.get_job(db, "q" * 32)).phase == "before"  # nothing written as NULL


@pytest.fixture
def redis_url(tmp_path: Path):
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server.url


async def test_events_keep_the_order_they_were_published_in(redis_url: str) -> None:
    """Events sent without waiting and events waited for go out through one sender, in order,
    however many pipelines it takes."""
    from jobs.engine import redis_client

    redis = redis_client(redis_url)
    bus = EventBus(redis)
    try:
        for i in range(50):
            if i % 3:
                bus.publish_soon(("log", ("job:x",), {"n": i}))
            else:
                await bus.publish_batched(("log", ("job:x",), {"n": i}), ("log", ("job:x",),
                                                                           {"n": i + 0.5}))
        await bus.flush()
        seen = [e.data["n"] for e in await read_after(redis, "0-0", count=1000)]
        assert seen == sorted(seen) and len(seen) == 50 + 17
    finally:
        await redis.aclose()


async def test_a_publish_that_cannot_reach_redis_says_so(tmp_path: Path, caplog) -> None:
    """A job rides out a Redis outage: its live events are dropped (pages catch up from the
    database when they reconnect), not raised into the job; the log says so, once."""
    from jobs.engine import redis_client

    redis = redis_client(f"unix://{tmp_path / 'nobody-here.sock'}")
    bus = EventBus(redis)
    try:
        with caplog.at_level("WARNING", logger="marketdesk.events"):
            await bus.publish_batched(("log", ("job:x",), {"n": 1}))
            await bus.publish_batched(("log", ("job:x",), {"n": 2}))
        said = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(said) == 1 and "live events are dropped" in said[0], said
        assert "nobody-here.sock" not in said[0]  # no address of ours in the log
    finally:
        await redis.aclose()


async def test_a_full_worker_starts_the_next_job_when_slots_free(redis_url: str, tmp_path: Path) -> None:
    """arq alone sleeps out its poll delay once every slot is busy; ours refills at once."""
    from jobs import queue
    from jobs.engine import Engine
    from jobs.migrate import upgrade_async
    from jobs.settings import Settings
    from jobs.worker import build_worker

    settings = Settings(data_dir=tmp_path / "data", redis_url=redis_url)
    await upgrade_async(settings.resolved_database_url)
    engine = Engine(settings, redis_url)
    try:
        ids = [(await queue.submit(engine, "diagnostics.sleep", {"steps": 1, "step_seconds": 0.1})).id
               for _ in range(8)]
        worker = build_worker(engine, burst=True, max_jobs=2, poll_delay=5.0, handle_signals=False)
        start = time.monotonic()
        await asyncio.wait_for(worker.async_run(), 30)
        took = time.monotonic() - start
        await worker.close()
        assert {(await store.get_job(engine.db, i)).status for i in ids} == {"completed"}
        # four rounds of two 0.1 s jobs; a worker that waited for its 5 s poll would take 15 s
        assert took < 3, f"took {took:.1f} s"
    finally:
        await engine.db.dispose()


async def test_a_burst_ends_when_its_last_job_does(redis_url: str, tmp_path: Path) -> None:
    """arq counts running jobs as queued: with a job still running after its poll, stock arq
    sleeps out the whole poll delay before it sees the queue empty (the cause of the flaky
    "took 5.0 s" above). A lone job on a half-empty worker shows it every time."""
    from jobs import queue
    from jobs.engine import Engine
    from jobs.migrate import upgrade_async
    from jobs.settings import Settings
    from jobs.worker import build_worker

    settings = Settings(data_dir=tmp_path / "data", redis_url=redis_url)
    await upgrade_async(settings.resolved_database_url)
    engine = Engine(settings, redis_url)
    try:
        job_id = (await queue.submit(engine, "diagnostics.sleep", {"steps": 1, "step_seconds": 0.3})).id
        worker = build_worker(engine, burst=True, max_jobs=4, poll_delay=5.0, handle_signals=False)
        start = time.monotonic()
        await asyncio.wait_for(worker.async_run(), 30)
        took = time.monotonic() - start
        await worker.close()
        assert (await store.get_job(engine.db, job_id)).status == "completed"
        assert took < 2, f"took {took:.1f} s"
    finally:
        await engine.db.dispose()


async def test_a_slow_read_never_holds_the_write_lock_nor_delays_another_processs_write(
        db_url: str) -> None:
    """The web's heavy reads (the overview at a million jobs, coverage at thousands of symbols)
    once shared a transaction with a submit's INSERT and held SQLite's write lock for their
    whole length: the worker's progress write waited past its busy timeout ("database is
    locked") and the job failed; heartbeats gapped. A read now runs beside the writer."""
    web = Database(db_url)
    try:
        started = threading.Event()

        def slow_read(conn: sa.Connection) -> int:
            n = conn.execute(sa.select(sa.func.count()).select_from(store.JOB)).scalar_one()
            started.set()
            time.sleep(1.5)  # a heavy query, holding its snapshot
            return int(n)

        async def worker_writes() -> float:
            """Another process's short write (a heartbeat), with a busy timeout far below the
            read's length: it must not wait for the read."""
            await asyncio.to_thread(started.wait, 10)
            other = Database(db_url)
            try:
                t = time.monotonic()
                await other.run(lambda conn: conn.execute(
                    sa.text("SELECT 1") if conn.dialect.name != "sqlite" else
                    sa.text("PRAGMA busy_timeout=300")))
                await store.insert_job(other, Job(id="w" * 32, kind="diagnostics.noop"), 100)
                return time.monotonic() - t
            finally:
                await other.dispose()

        job = Job(id="s" * 32, kind="diagnostics.noop")
        _, n, took = await asyncio.gather(store.insert_job(web, job, 100), web.read(slow_read),
                                          worker_writes())
        assert n >= 0
        assert took < 0.5, f"another process's write waited {took:.2f} s behind a read"
        assert {(await store.get_job(web, i)).status for i in ("s" * 32, "w" * 32)} == {"pending"}
    finally:
        await web.dispose()


def _slow_first(runs: list[int]):
    """A read counting the jobs, the first of which holds its answer for half a second after
    counting (on the reader thread on SQLite; on PostgreSQL on the server, not the loop)."""
    def count(conn: sa.Connection, fail: bool = False) -> int:
        runs.append(1)
        n = conn.execute(sa.select(sa.func.count()).select_from(store.JOB)).scalar_one()
        if len(runs) == 1:
            if conn.dialect.name == "sqlite":
                time.sleep(0.5)
            else:
                conn.execute(sa.text("SELECT pg_sleep(0.5)"))
        if fail:
            raise ValueError("the read failed")
        return int(n)
    return count


async def test_requests_reading_at_once_share_a_read_begun_after_each_of_them(db: Database) -> None:
    # the busiest pages' reads (GET /jobs, /api/symbols, /api/contracts) are shared by the
    # requests that make them at once; none may get an answer read before it asked
    runs: list[int] = []
    count = _slow_first(runs)
    first = asyncio.create_task(db.read_shared(count))
    await asyncio.sleep(0.15)  # the first read has counted and holds its answer
    assert await store.insert_job(db, Job(id="r" * 32, kind="diagnostics.noop"), 100) is None
    later = await asyncio.gather(*(db.read_shared(count) for _ in range(20)))
    assert await first == 0
    assert later == [1] * 20  # every later caller sees the job written before it asked
    assert len(runs) == 2  # twenty-one callers, two reads
    assert await db.read_shared(count) == 1 and len(runs) == 3  # alone again: a read of its own


async def test_a_shared_read_outlives_a_caller_that_gave_up_and_hands_on_its_error(
        db: Database) -> None:
    runs: list[int] = []
    count = _slow_first(runs)
    first = asyncio.create_task(db.read_shared(count))
    await asyncio.sleep(0.15)
    second = asyncio.create_task(db.read_shared(count))
    await asyncio.sleep(0)
    first.cancel()  # a request whose client went away
    assert await second == 0 and len(runs) == 2
    with pytest.raises(asyncio.CancelledError):
        await first
    # a failure reaches every caller of that read, and the next read is made afresh
    failing = await asyncio.gather(*(db.read_shared(count, fail=True) for _ in range(5)),
                                   return_exceptions=True)
    assert [str(e) for e in failing] == ["the read failed"] * 5
    assert await db.read_shared(count) == 0


def _held_writer(db: Database) -> tuple[threading.Event, asyncio.Task[str]]:
    """A write that holds the writer until the returned gate is set."""
    gate = threading.Event()

    def hold(conn: sa.Connection) -> str:
        gate.wait(10)
        return "held"
    return gate, asyncio.create_task(db.run(hold))


async def test_writes_asked_for_at_once_keep_their_own_outcomes(db: Database) -> None:
    # on SQLite writes that queue behind a busy writer commit together (group commit); a write
    # that raises must still fail alone: its rows rolled back, every other write kept
    def insert(conn: sa.Connection, n: int, fail: bool = False) -> int:
        store.insert_job.sync(conn, Job(id=f"{n:032d}", kind="diagnostics.noop"), 100)
        if fail:
            raise ValueError(f"write {n} failed")
        return n

    gate, held = _held_writer(db)
    await asyncio.sleep(0.05)
    writes = [asyncio.create_task(db.run(insert, n, fail=n == 3)) for n in range(8)]
    await asyncio.sleep(0.05)
    gate.set()
    outcomes = await asyncio.gather(held, *writes, return_exceptions=True)
    assert [str(o) if isinstance(o, Exception) else o for o in outcomes] == [
        "held", 0, 1, 2, "write 3 failed", 4, 5, 6, 7]
    kept, _ = await store.list_jobs(db, limit=50)
    assert sorted(job.id for job in kept) == [f"{n:032d}" for n in (0, 1, 2, 4, 5, 6, 7)]


async def test_sqlite_writes_queued_behind_a_busy_writer_commit_in_one_transaction(
        tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'group.db'}")
    try:
        seen: list[sa.RootTransaction | None] = []

        def note(conn: sa.Connection) -> None:
            seen.append(conn.get_transaction())
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))

        gate, held = _held_writer(db)
        await asyncio.sleep(0.05)
        queued = [asyncio.create_task(db.run(note)) for _ in range(20)]
        ran: list[int] = []
        gave_up = asyncio.create_task(db.run(lambda conn: ran.append(1)))
        await asyncio.sleep(0.05)
        gave_up.cancel()  # its caller went away before its write went over: it never runs
        gate.set()
        await asyncio.gather(held, *queued)
        assert len(seen) == 20 and len({id(t) for t in seen}) == 1  # one commit for twenty
        await db.run(note)  # alone again: a transaction of its own, and the queue is empty
        assert seen[-1] is not seen[0] and ran == []
        with pytest.raises(asyncio.CancelledError):
            await gave_up
    finally:
        await db.dispose()


async def test_writes_queued_when_the_database_closes_are_written_and_answered(
        tmp_path: Path) -> None:
    # a worker stopping, a web process redeployed: what was asked for before is not lost
    url = f"sqlite:///{tmp_path / 'close.db'}"
    db = Database(url)
    await db.run(lambda conn: conn.execute(sa.text("CREATE TABLE t (x INTEGER)")))
    gate, held = _held_writer(db)
    await asyncio.sleep(0.05)
    writes = [asyncio.create_task(db.run(lambda conn, n=n: conn.execute(
        sa.text("INSERT INTO t VALUES (:n)"), {"n": n}).rowcount)) for n in range(150)]
    await asyncio.sleep(0)
    closing = asyncio.create_task(db.dispose())
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(held, *writes), 10) == ["held", *[1] * 150]
    await asyncio.wait_for(closing, 10)
    again = Database(url)
    try:
        assert await again.read(lambda conn: conn.execute(sa.text("SELECT count(*) FROM t"))
                                .scalar()) == 150
    finally:
        await again.dispose()


async def test_a_write_that_raises_stopiteration_fails_alone(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'stop.db'}")
    try:
        gate, held = _held_writer(db)
        await asyncio.sleep(0.05)
        odd = asyncio.create_task(db.run(lambda conn: next(iter(()))))
        after = asyncio.create_task(db.run(lambda conn: "after"))
        await asyncio.sleep(0.05)
        gate.set()
        with pytest.raises(RuntimeError, match="StopIteration"):
            await asyncio.wait_for(odd, 5)
        assert await asyncio.wait_for(after, 5) == "after"
        assert await asyncio.wait_for(db.run(lambda conn: "later"), 5) == "later"
        await held
    finally:
        await db.dispose()


async def test_two_event_loops_writing_through_one_database_both_get_answers(
        tmp_path: Path) -> None:
    # the app's loop and a test client's portal thread may share one Database
    db = Database(f"sqlite:///{tmp_path / 'loops.db'}")
    try:
        gate, held = _held_writer(db)
        await asyncio.sleep(0.05)
        mine = asyncio.create_task(db.run(lambda conn: "mine"))
        other = asyncio.create_task(asyncio.to_thread(
            asyncio.run, asyncio.wait_for(db.run(lambda conn: "other"), 5)))
        await asyncio.sleep(0.1)
        gate.set()
        assert await asyncio.wait_for(asyncio.gather(held, mine, other), 10) == [
            "held", "mine", "other"]
    finally:
        await db.dispose()


def test_domain_reads_answer_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    """The symbols, contracts and simulation pages and APIs only read: they must not queue for
    SQLite's write lock (once they did, through the writer thread: every GET /api/symbols took
    the lock, and two web processes made each other's answers wait up to a second)."""
    import sqlite3

    from tests.inprocess import app_client

    with app_client(tmp_path) as client:
        assert client.post("/api/symbols", json={"symbol": "SPX"}).status_code == 201
        holder = sqlite3.connect(tmp_path / "web.db", timeout=1)
        holder.isolation_level = None
        holder.execute("BEGIN IMMEDIATE")  # another process's long write
        try:
            for path in ("/api/symbols", "/api/symbols/SPX", "/symbols", "/results",
                         "/simulations", "/api/contracts/SHFE.cu2501/days"):
                t = time.monotonic()
                r = client.get(path)
                took = time.monotonic() - t
                assert r.status_code in (200, 404), (path, r.status_code, r.text[:200])
                assert took < 0.5, f"{path} waited {took:.2f} s for the write lock"
        finally:
            holder.execute("ROLLBACK")
            holder.close()


async def test_a_write_waiting_for_another_process_gets_the_lock_as_soon_as_it_is_free(
        tmp_path: Path) -> None:
    """Another process holds SQLite's write lock for a while: our write waits, then commits
    within a few milliseconds of the release (SQLite's own busy handler sleeps up to 100 ms
    between tries by then, and under steady contention keeps losing the lock)."""
    import sqlite3
    import statistics

    from jobs.migrate import upgrade_async

    url = f"sqlite:///{tmp_path / 'lock.db'}"
    await upgrade_async(url)
    db = Database(url)
    holder = sqlite3.connect(tmp_path / "lock.db", timeout=1, check_same_thread=False)
    holder.isolation_level = None
    lags = []
    try:
        for n in range(5):
            holder.execute("BEGIN IMMEDIATE")
            released = 0.0

            def release_later() -> None:
                nonlocal released
                time.sleep(0.35)
                released = time.monotonic()
                holder.execute("ROLLBACK")

            releaser = threading.Thread(target=release_later)
            releaser.start()
            await store.insert_job(db, Job(id=f"{n}" * 32, kind="diagnostics.noop"), 100)
            lags.append(time.monotonic() - released)
            releaser.join()
            assert released, "the write did not wait for the holder"
        assert statistics.median(lags) < 0.01 and max(lags) < 0.05, \
            f"commits came {[round(x * 1000, 1) for x in lags]} ms after the releases"
        assert (await store.get_job(db, "0" * 32)).status == "pending"
    finally:
        holder.close()
        await db.dispose()


async def test_a_worker_stopped_while_its_claim_is_on_the_way_hands_the_job_back(
        redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM cancels a job task wherever it is; when that is while the claim is on its way,
    the database thread finishes the claim anyway. The job must go back to the queue at once,
    not stay "running" for a worker that is gone until its lease expires (30 s): a busy machine
    and a niced worker made this the usual outcome of stopping two workers together."""
    import signal

    from jobs import queue
    from jobs.engine import Engine
    from jobs.migrate import upgrade_async
    from jobs.settings import Settings
    from jobs.worker import build_worker

    settings = Settings(data_dir=tmp_path / "data", redis_url=redis_url)
    await upgrade_async(settings.resolved_database_url)
    engine = Engine(settings, redis_url)
    try:
        job_id = (await queue.submit(engine, "diagnostics.sleep", {"steps": 1, "step_seconds": 0.1})).id
        real_claim, taken = store.claim, asyncio.Event()

        async def claim_answering_late(*args: object, **kwargs: object) -> object:
            row = await real_claim(*args, **kwargs)  # type: ignore[arg-type]
            taken.set()
            await asyncio.sleep(0.5)  # the answer is still on its way when the signal comes
            return row

        monkeypatch.setattr(store, "claim", claim_answering_late)
        worker = build_worker(engine, max_jobs=1, poll_delay=0.05, handle_signals=False)
        running = asyncio.ensure_future(worker.async_run())
        await asyncio.wait_for(taken.wait(), 10)
        assert (await store.get_job(engine.db, job_id)).status == "running"
        worker.handle_sig(signal.SIGTERM)  # what SIGTERM does: cancel the job tasks and the loop
        with pytest.raises(asyncio.CancelledError):
            await running
        await worker.close()
        job = await store.get_job(engine.db, job_id)
        assert job.status == "pending", job
        assert any(line["message"] == "Requeued: worker shut down"
                   for line in await store.job_logs(engine.db, job_id))
    finally:
        await engine.close()


async def test_a_worker_told_to_stop_starts_no_job_even_if_its_poll_loop_runs_on(
        redis_url: str, tmp_path: Path) -> None:
    """Stopping two workers together: one hands its job back, and the other, whose poll loop's
    cancellation got lost, started that job, ran it until serve killed it three seconds later,
    and the job waited a lease (30 s) for nobody. A worker told to stop takes no job, and its
    poll loop ends at its next iteration whatever became of the cancellation."""
    import signal

    from jobs import queue
    from jobs.engine import Engine
    from jobs.migrate import upgrade_async
    from jobs.settings import Settings
    from jobs.worker import build_worker

    settings = Settings(data_dir=tmp_path / "data", redis_url=redis_url)
    await upgrade_async(settings.resolved_database_url)
    engine = Engine(settings, redis_url)
    worker = build_worker(engine, max_jobs=2, poll_delay=0.05, handle_signals=False)
    try:
        worker._pool = engine.redis  # what main() sets before its loop
        worker.handle_sig(signal.SIGTERM)  # no loop running: nothing of it to cancel
        job_id = (await queue.submit(engine, "diagnostics.noop", {})).id
        with pytest.raises(asyncio.CancelledError):
            await worker._poll_iteration()  # the loop went on: this iteration ends it
        assert worker.tasks == {}
        assert (await store.get_job(engine.db, job_id)).status == "pending"
    finally:
        worker._pool = None
        await engine.close()

