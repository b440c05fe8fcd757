"""Reads and writes of job rows and their log lines. Every status change is conditional."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from jobs.db import Database, utcnow
from jobs.models import Job, JobLog
from jobs.status import ALLOWED_FROM, Status

_JOB = Job.__table__  # type: ignore[attr-defined]
_LOG = JobLog.__table__  # type: ignore[attr-defined]


async def insert_job(db: Database, job: Job, max_pending: int) -> bool:
    """Write ``job`` only while fewer than ``max_pending`` jobs are pending (one statement)."""
    values = {c.name: getattr(job, c.name) for c in _JOB.columns}
    pending = (
        sa.select(sa.func.count()).select_from(_JOB)
        .where(_JOB.c.status == Status.PENDING.value).scalar_subquery()
    )
    row = sa.select(*[sa.literal(values[c.name], type_=c.type).label(c.name) for c in _JOB.columns])
    stmt = sa.insert(_JOB).from_select(
        [c.name for c in _JOB.columns], row.where(pending < max_pending)
    )
    async with db.session() as s:
        if not db.url.startswith("sqlite"):
            # PostgreSQL runs concurrent inserts side by side: serialise the count-and-insert
            # (SQLite already does, having one writer at a time)
            await s.execute(sa.text("SELECT pg_advisory_xact_lock(728101)"))
        result = await s.execute(stmt)
        await s.commit()
        return bool(result.rowcount)


async def get_job(db: Database, job_id: str) -> Job | None:
    async with db.session() as s:
        return await s.get(Job, job_id)


async def delete_job(db: Database, job_id: str) -> None:
    async with db.session() as s:
        await s.execute(sa.delete(JobLog).where(col(JobLog.job_id) == job_id))
        await s.execute(sa.delete(Job).where(col(Job.id) == job_id))
        await s.commit()


def _filtered(stmt: Any, kind: str | None, status: str | None, q: str | None) -> Any:
    if kind:
        stmt = stmt.where(col(Job.kind) == kind)
    if status:
        stmt = stmt.where(col(Job.status) == status)
    if q:
        stmt = stmt.where(col(Job.id).startswith(q.strip().lower()))
    return stmt


async def list_jobs(db: Database, *, kind: str | None = None, status: str | None = None,
                    q: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[Job], int]:
    async with db.session() as s:
        total = (await s.exec(_filtered(select(sa.func.count()).select_from(Job), kind, status, q))).one()
        stmt = _filtered(select(Job), kind, status, q)
        stmt = stmt.order_by(col(Job.created_at).desc(), col(Job.id).desc()).limit(limit).offset(offset)
        rows = (await s.exec(stmt)).all()
        return list(rows), int(total)


async def jobs_in(db: Database, statuses: Iterable[str], limit: int = 50,
                  newest_first: bool = True) -> list[Job]:
    order = col(Job.updated_at).desc() if newest_first else col(Job.created_at)
    async with db.session() as s:
        stmt = select(Job).where(col(Job.status).in_(list(statuses))).order_by(order).limit(limit)
        return list((await s.exec(stmt)).all())


async def jobs_with_warnings(db: Database, limit: int = 10) -> list[Job]:
    async with db.session() as s:
        stmt = (select(Job).where(col(Job.finished_at).is_not(None))
                .order_by(col(Job.finished_at).desc()).limit(200))
        rows = [j for j in (await s.exec(stmt)).all() if j.warnings]
        return rows[:limit]


async def status_counts(db: Database) -> dict[str, int]:
    async with db.session() as s:
        rows = (await s.exec(select(Job.status, sa.func.count()).group_by(Job.status))).all()
    counts = {st.value: 0 for st in Status}
    counts.update({status: int(n) for status, n in rows})
    return counts


async def count_pending(db: Database, kinds: Iterable[str] | None = None,
                        statuses: Iterable[str] = (Status.PENDING.value,)) -> int:
    async with db.session() as s:
        stmt = select(sa.func.count()).select_from(Job).where(col(Job.status).in_(list(statuses)))
        if kinds is not None:
            stmt = stmt.where(col(Job.kind).in_(list(kinds)))
        return int((await s.exec(stmt)).one())


async def update_job(db: Database, job_id: str, values: dict[str, Any], *,
                     only_from: Iterable[str] | None = None,
                     where: sa.ColumnElement[bool] | None = None) -> Job | None:
    """UPDATE one row if it is still in ``only_from``; the updated row, or None if it was not."""
    values = {**values, "updated_at": utcnow()}
    # Core statements on the table (not the ORM entity): the ORM's update machinery costs
    # more CPU than the statement itself on this hot path
    stmt = sa.update(_JOB).where(_JOB.c.id == job_id).values(**values)
    if only_from is not None:
        stmt = stmt.where(_JOB.c.status.in_([str(s) for s in only_from]))
    if where is not None:
        stmt = stmt.where(where)
    async with db.session() as s:
        result = await s.execute(stmt.returning(*_JOB.columns))
        row = result.mappings().first()
        await s.commit()
    return Job.model_validate(dict(row)) if row else None


async def transition(db: Database, job_id: str, to: Status, values: dict[str, Any] | None = None,
                     *, only_from: Iterable[Status] | None = None,
                     where: sa.ColumnElement[bool] | None = None) -> Job | None:
    allowed = ALLOWED_FROM[to] if only_from is None else frozenset(only_from) & ALLOWED_FROM[to]
    return await update_job(db, job_id, {**(values or {}), "status": to.value},
                            only_from=allowed, where=where)


async def _insert_log(s: Any, job_id: str, message: str, level: str, keep: int) -> JobLog:
    line = JobLog(job_id=job_id, message=message[:4000], level=level, at=utcnow())
    line.id = (await s.execute(sa.insert(_LOG).values(
        job_id=line.job_id, message=line.message, level=line.level, at=line.at,
    ).returning(_LOG.c.id))).scalar_one()
    if line.id % 25 == 0:  # now and then, keep only the newest ``keep`` lines of the job
        cutoff = (
            select(JobLog.id).where(col(JobLog.job_id) == job_id)
            .order_by(col(JobLog.id).desc()).offset(keep).limit(1).scalar_subquery()
        )
        await s.execute(sa.delete(JobLog).where(col(JobLog.job_id) == job_id, col(JobLog.id) <= cutoff))
    return line


async def add_log(db: Database, job_id: str, message: str, level: str = "info",
                  keep: int = 500) -> JobLog:
    async with db.session() as s:
        line = await _insert_log(s, job_id, message, level, keep)
        await s.commit()
        return line


async def finish_job(db: Database, job_id: str, to: Status, values: dict[str, Any], *,
                     only_from: Iterable[Status], log_message: str, log_level: str = "info",
                     keep: int = 500) -> tuple[Job, JobLog] | None:
    """The final status and its log line, in one transaction; None if the row had moved on."""
    allowed = [str(st) for st in frozenset(only_from) & ALLOWED_FROM[to]]
    stmt = (sa.update(_JOB).where(_JOB.c.id == job_id, _JOB.c.status.in_(allowed))
            .values(**values, status=to.value, updated_at=utcnow()).returning(*_JOB.columns))
    async with db.session() as s:
        row = (await s.execute(stmt)).mappings().first()
        if row is None:
            await s.rollback()
            return None
        line = await _insert_log(s, job_id, log_message, log_level, keep)
        await s.commit()
    return Job.model_validate(dict(row)), line


async def job_logs(db: Database, job_id: str, limit: int = 200) -> list[JobLog]:
    async with db.session() as s:
        stmt = (select(JobLog).where(col(JobLog.job_id) == job_id)
                .order_by(col(JobLog.id).desc()).limit(limit))
        return list(reversed((await s.exec(stmt)).all()))


async def stale_active_jobs(db: Database, older_than: datetime) -> list[Job]:
    async with db.session() as s:
        stmt = select(Job).where(
            col(Job.status).in_([Status.DOWNLOADING_DATA.value, Status.RUNNING.value]),
            sa.or_(col(Job.heartbeat_at).is_(None), col(Job.heartbeat_at) < older_than),
        )
        return list((await s.exec(stmt)).all())


async def pending_jobs_older_than(db: Database, older_than: datetime, limit: int = 500) -> list[Job]:
    async with db.session() as s:
        stmt = (select(Job).where(col(Job.status) == Status.PENDING.value,
                                  col(Job.updated_at) < older_than)
                .order_by(col(Job.created_at)).limit(limit))
        return list((await s.exec(stmt)).all())
