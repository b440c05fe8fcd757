"""Demo data for a first `marketdesk serve`: each declared domain seeds its own (in the order
they build on each other), and the engine adds a finished diagnostics job, so every panel has
something to show. The helpers here write finished jobs for the domains' seeds."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobs import store
from jobs.db import Database, utcnow
from jobs.domain import load_domains
from jobs.models import Job
from jobs.queue import new_job_id
from jobs.settings import Settings
from jobs.status import Status

MARKER = ".demo-seeded"


async def seed_if_first_run(settings: Settings) -> bool:
    marker = settings.data_dir / MARKER
    if marker.exists():
        return False
    db = Database(settings.resolved_database_url)
    try:
        _, total = await store.list_jobs(db, limit=1)
        if total == 0:
            await seed(db)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(utcnow().isoformat())
        return total == 0
    finally:
        await db.dispose()


async def seed(db: Database) -> None:
    for domain in load_domains():
        if domain.seed is not None:
            await domain.seed(db)
    await insert_finished(db, [finished_job("diagnostics.sleep", {"steps": 5, "step_seconds": 0.5},
                                            Status.COMPLETED, 10, 2.6, result={"steps": 5})])


def finished_job(kind: str, params: dict[str, Any], status: Status, minutes_ago: int, seconds: float,
                 warnings: list[str] | None = None, error: str | None = None,
                 result: dict[str, Any] | None = None,
                 lines: tuple[str, ...] = ()) -> tuple[Job, list[str]]:
    """A job that ran ``minutes_ago`` for ``seconds`` and ended ``status``, with its log lines."""
    started = utcnow() - timedelta(minutes=minutes_ago)
    job = Job(id=new_job_id(), kind=kind, params=params, status=status.value, attempts=1,
              progress_done=1, progress_total=1, phase="Done", warnings=warnings or [],
              error=error, result=result, created_at=started - timedelta(seconds=1),
              updated_at=started + timedelta(seconds=seconds), started_at=started,
              finished_at=started + timedelta(seconds=seconds))
    return job, list(lines)


async def insert_finished(db: Database, entries: list[tuple[Job, list[str]]]) -> None:
    await db.run(_insert_finished, entries, utcnow())


def _insert_finished(conn: sa.Connection, entries: list[tuple[Job, list[str]]], now: datetime) -> None:
    conn.execute(sa.insert(store.JOB), [job.values() for job, _ in entries])
    lines = [{"job_id": job.id, "message": line, "level": "info", "at": job.finished_at or now}
             for job, job_lines in entries for line in job_lines]
    if lines:
        conn.execute(sa.insert(store.LOG), lines)
