"""The store on each database: schema constraints, conditional transitions, aware timestamps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from jobs import store
from jobs.db import Database
from jobs.models import Job
from jobs.status import Status


async def test_status_check_constraint_rejects_unknown_status(db: Database) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        await db.run(lambda conn: conn.execute(sa.insert(store.JOB).values(
            Job(id="x" * 32, kind="diagnostics.noop", status="done").values())))
    assert await store.get_job(db, "x" * 32) is None  # nothing half-written


async def test_transitions_only_from_allowed_statuses(db: Database) -> None:
    assert await store.insert_job(db, Job(id="a" * 32, kind="diagnostics.noop"), 5) is None
    # pending cannot complete without having run
    assert await store.transition(db, "a" * 32, Status.COMPLETED) is None
    running = await store.transition(db, "a" * 32, Status.RUNNING)
    assert running is not None and running.status == "running"
    done = await store.transition(db, "a" * 32, Status.COMPLETED)
    assert done is not None and done.status == "completed"
    # a finished job stays finished
    assert await store.transition(db, "a" * 32, Status.CANCELLED) is None
    assert await store.transition(db, "a" * 32, Status.RUNNING) is None
    assert (await store.get_job(db, "a" * 32)).status == "completed"


async def test_timestamps_come_back_timezone_aware_utc(db: Database) -> None:
    naive = datetime(2025, 3, 1, 12, 0, 0)  # from outside: taken as UTC
    await store.insert_job(db, Job(id="b" * 32, kind="diagnostics.noop", created_at=naive), 5)
    job = await store.get_job(db, "b" * 32)
    assert job.created_at == datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert job.created_at.utcoffset().total_seconds() == 0


async def test_pending_limit_holds_under_concurrent_submits(db: Database) -> None:
    jobs = [Job(id=f"{i:032d}", kind="diagnostics.noop") for i in range(30)]
    results = await asyncio.gather(*(store.insert_job(db, j, 20) for j in jobs))
    assert results.count(None) == 20 and results.count("full") == 10
    assert await store.count_unfinished(db) == 20


def test_migrations_match_the_models(db_url: str) -> None:
    """A model change without its migration would leave production's schema behind."""
    from alembic import command

    from jobs.migrate import alembic_config

    command.check(alembic_config(db_url))  # raises when autogenerate would find a difference


def test_job_records_carry_every_column_of_the_table() -> None:
    """Job (the record the code passes around) and the job table cannot drift apart."""
    from dataclasses import fields

    from jobs.models import JobTable

    assert [f.name for f in fields(Job)] == [c.name for c in JobTable.__table__.columns]


async def test_an_exclusive_kind_is_refused_while_one_of_its_jobs_is_unfinished(db: Database) -> None:
    first, second = (Job(id=c * 32, kind="simulation.run") for c in "cd")
    assert await store.insert_job(db, first, 5, exclusive=True) is None
    assert await store.insert_job(db, second, 5, exclusive=True) == "busy"
    # another kind is not held back, and a full queue says so
    assert await store.insert_job(db, Job(id="e" * 32, kind="diagnostics.noop"), 5) is None
    assert await store.insert_job(db, Job(id="f" * 32, kind="diagnostics.noop"), 2) == "full"
    await store.transition(db, first.id, Status.RUNNING)
    assert await store.insert_job(db, second, 5, exclusive=True) == "busy"
    await store.transition(db, first.id, Status.COMPLETED)
    assert await store.insert_job(db, second, 5, exclusive=True) is None
    assert await store.get_job(db, second.id) is not None


async def test_cancel_requests_by_status(db: Database) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for c in "ghi":
        await store.insert_job(db, Job(id=c * 32, kind="diagnostics.noop"), 5)
    job, outcome = await store.request_cancel(db, "g" * 32, at)  # pending: at once
    assert (job.status, outcome, job.finished_at) == ("cancelled", "cancelled", at)
    await store.transition(db, "h" * 32, Status.RUNNING)  # running: marked for its worker
    job, outcome = await store.request_cancel(db, "h" * 32, at)
    assert (job.status, outcome, job.cancel_requested_at) == ("running", "stopping", at)
    later = datetime(2026, 1, 2, 3, 9, tzinfo=UTC)  # asked again: the first time is kept
    job, outcome = await store.request_cancel(db, "h" * 32, later)
    assert (outcome, job.cancel_requested_at) == ("stopping", at)
    await store.transition(db, "i" * 32, Status.RUNNING)
    await store.transition(db, "i" * 32, Status.COMPLETED)
    job, outcome = await store.request_cancel(db, "i" * 32, at)  # finished: left alone
    assert (job.status, outcome, job.cancel_requested_at) == ("completed", "finished", None)
    assert await store.request_cancel(db, "0" * 32, at) is None


async def test_operations_committed_together_keep_their_failures_to_themselves(db: Database) -> None:
    """Operations asked for at the same moment share a transaction on SQLite; one that fails
    (here a status the CHECK constraint refuses) must not take the others down with it."""

    def bad_insert(conn: sa.Connection) -> None:
        conn.execute(sa.insert(store.JOB).values(Job(id="z" * 32, kind="x", status="done").values()))

    good = [Job(id=f"{i:032d}", kind="diagnostics.noop") for i in range(5)]
    results = await asyncio.gather(
        *(store.insert_job(db, j, 50) for j in good[:3]), db.run(bad_insert),
        *(store.insert_job(db, j, 50) for j in good[3:]), return_exceptions=True)
    assert results[:3] + results[4:] == [None] * 5
    assert isinstance(results[3], sa.exc.IntegrityError)
    assert [await store.get_job(db, j.id) is not None for j in good] == [True] * 5
    assert await store.get_job(db, "z" * 32) is None


@pytest.mark.parametrize(("given", "used"), [
    ("sqlite+aiosqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ("sqlite:///rel.db", "sqlite:///rel.db"),
    ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
    ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
])
def test_database_urls_name_the_driver_we_use(given: str, used: str) -> None:
    from jobs.db import normalize_url

    assert normalize_url(given) == used


def test_a_database_we_cannot_use_is_named_in_the_settings_error(monkeypatch) -> None:
    from jobs.settings import SettingsError, load_settings

    monkeypatch.setenv("MARKETDESK_DATABASE_URL", "mysql://root@localhost/db")
    with pytest.raises(SettingsError, match="MARKETDESK_DATABASE_URL='mysql://root@localhost/db'.*"
                                            "unsupported database 'mysql'"):
        load_settings()


async def test_jobs_list_filters_pages_and_finds_by_id_prefix(db: Database) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = ["ab12" + "0" * 28, "ab34" + "0" * 28, "cd56" + "0" * 28]
    for i, (job_id, kind) in enumerate(zip(ids, ["a.x", "b.y", "a.x"], strict=True)):
        await store.insert_job(db, Job(id=job_id, kind=kind, created_at=base.replace(hour=i)), 50)
    await store.transition(db, ids[2], Status.RUNNING)

    jobs, total = await store.list_jobs(db)
    assert ([j.id for j in jobs], total) == (ids[::-1], 3)  # newest first
    assert [j.id for j in (await store.list_jobs(db, limit=1, offset=1))[0]] == [ids[1]]
    assert (await store.list_jobs(db, kind="a.x"))[1] == 2
    assert [j.id for j in (await store.list_jobs(db, status="running"))[0]] == [ids[2]]
    assert [j.id for j in (await store.list_jobs(db, q=" AB1 "))[0]] == [ids[0]]
    assert (await store.list_jobs(db, q="ab"))[1] == 2
    # LIKE's wildcards in the box are plain characters, not patterns
    assert (await store.list_jobs(db, q="%"))[1] == 0
    assert (await store.list_jobs(db, q="a_"))[1] == 0
    assert (await store.list_jobs(db, kind="a.x", status="pending", q="ab"))[1] == 1


async def test_counts_per_status_follow_every_change(db: Database) -> None:
    """The per-status counts (kept by triggers) are what a full count of the table says, after
    inserts, transitions, a requeue, a cancel and a delete."""

    def counted(conn: sa.Connection) -> dict[str, int]:
        rows = conn.execute(sa.select(store.JOB.c.status, sa.func.count()).group_by(store.JOB.c.status))
        return {status: n for status, n in rows}

    ids = [f"{i:032d}" for i in range(6)]
    for job_id in ids:
        await store.insert_job(db, Job(id=job_id, kind="diagnostics.noop", arq_job_id="a"), 50)
    await store.claim(db, ids[0], "a", Status.RUNNING, "w", datetime.now(UTC))
    await store.claim(db, ids[1], "a", Status.DOWNLOADING_DATA, "w", datetime.now(UTC))
    await store.transition(db, ids[1], Status.RUNNING)
    await store.finish_job(db, ids[1], Status.PARTIAL, {}, only_from=[Status.RUNNING], log_message="x")
    await store.request_cancel(db, ids[2], datetime.now(UTC))
    await store.transition(db, ids[3], Status.FAILED)
    await store.requeue(db, ids[0], "running", "a", "b", "worker lost")
    await store.delete_job(db, ids[4])
    await store.transition(db, ids[5], Status.PENDING)  # not allowed: nothing changes

    counts = (await store.overview(db))["counts"]
    assert {s: n for s, n in counts.items() if n} == await db.run(counted)
    assert counts == {"pending": 2, "downloading_data": 0, "running": 0, "completed": 0,
                      "partial": 1, "failed": 1, "cancelled": 1}
    assert (await store.list_jobs(db))[1] == 5
    # the queue limit reads the pending count: two pending, a limit of two refuses the next
    assert await store.insert_job(db, Job(id="9" * 32, kind="diagnostics.noop"), 2) == "full"
    assert await store.insert_job(db, Job(id="9" * 32, kind="diagnostics.noop"), 3) is None


async def test_pages_by_cursor_cover_every_job_once_and_totals_come_from_the_counts(
        db: Database) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [f"{i:02d}" + "f" * 30 for i in range(7)]
    for i, job_id in enumerate(ids):  # two jobs share a created_at: the id breaks the tie
        at = base.replace(minute=min(i, 5))
        await store.insert_job(db, Job(id=job_id, kind="a.x" if i % 2 else "b.y", created_at=at), 50)
    newest_first = sorted(ids, key=lambda i: (base.replace(minute=min(ids.index(i), 5)), i),
                          reverse=True)
    seen, before = [], None
    while True:
        page, total = await store.list_jobs(db, limit=3, before=before)
        if not page:
            break
        seen += [j.id for j in page]
        before = page[-1].id
    assert seen == newest_first and total == 7
    second, _ = await store.list_jobs(db, limit=3, before=newest_first[2])
    back, _ = await store.list_jobs(db, limit=3, after=second[0].id)
    assert [j.id for j in back] == newest_first[:3]  # "newer" is the page before, in order
    # a kind and status seen for the first time is counted (the counts upsert their row)
    await store.transition(db, ids[1], Status.CANCELLED)
    assert (await store.list_jobs(db, kind="a.x"))[1] == 3
    assert (await store.list_jobs(db, kind="a.x", status="cancelled"))[1] == 1
    assert await store.count_unfinished(db, kinds=("a.x",)) == 2
    assert (await store.list_jobs(db, q="0"))[1] == 7 and (await store.list_jobs(db, q="03"))[1] == 1
