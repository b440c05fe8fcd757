"""The store on each database: schema constraints, conditional transitions, aware timestamps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from jobs import store
from jobs.db import Database
from jobs.migrate import upgrade
from jobs.models import Job
from jobs.status import Status
from tests.stack import create_postgres_database, postgres_base_url


@pytest.fixture
def db_url(database: str, tmp_path) -> str:
    if database == "postgres":
        url = create_postgres_database(postgres_base_url() or "")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    return url


def run(coro):
    return asyncio.run(coro)


def test_status_check_constraint_rejects_unknown_status(db_url: str) -> None:
    async def scenario() -> None:
        db = Database(db_url)
        try:
            with pytest.raises(sa.exc.IntegrityError):
                async with db.session() as s:
                    s.add(Job(id="x" * 32, kind="diagnostics.noop", status="done"))
                    await s.commit()
        finally:
            await db.dispose()

    run(scenario())


def test_transitions_only_from_allowed_statuses(db_url: str) -> None:
    async def scenario() -> None:
        db = Database(db_url)
        try:
            assert await store.insert_job(db, Job(id="a" * 32, kind="diagnostics.noop"), 5)
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
        finally:
            await db.dispose()

    run(scenario())


def test_timestamps_come_back_timezone_aware_utc(db_url: str) -> None:
    async def scenario() -> None:
        db = Database(db_url)
        try:
            naive = datetime(2025, 3, 1, 12, 0, 0)  # from outside: taken as UTC
            await store.insert_job(db, Job(id="b" * 32, kind="diagnostics.noop", created_at=naive), 5)
            job = await store.get_job(db, "b" * 32)
            assert job.created_at == datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
            assert job.created_at.utcoffset().total_seconds() == 0
        finally:
            await db.dispose()

    run(scenario())


def test_pending_limit_holds_under_concurrent_submits(db_url: str) -> None:
    async def scenario() -> int:
        db = Database(db_url)
        try:
            jobs = [Job(id=f"{i:032d}", kind="diagnostics.noop") for i in range(30)]
            results = await asyncio.gather(*(store.insert_job(db, j, 20) for j in jobs))
            assert sum(results) == 20
            return await store.count_pending(db)
        finally:
            await db.dispose()

    assert run(scenario()) == 20


def test_migrations_match_the_models(db_url: str) -> None:
    """A model change without its migration would leave production's schema behind."""
    from alembic import command

    from jobs.migrate import alembic_config

    command.check(alembic_config(db_url))  # raises when autogenerate would find a difference
