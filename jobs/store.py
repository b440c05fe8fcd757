"""Reads and writes of job rows and their log lines. Every status change is conditional.

Each function here is one store operation (``@operation``): one transaction, one hand-off,
called as ``await store.fn(db, ...)``. The statements on hot paths (submit, claim, progress,
finish, the jobs list) are built once, with bound parameters, and reused: building a
SQLAlchemy statement costs more CPU than SQLite takes to run it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from jobs.db import Prepared, UTCDateTime, operation, reads, shared_reads, utcnow
from jobs.models import JOB_COLUMNS, Job, JobCount, JobLog, JobTable, log_line
from jobs.status import ACTIVE_STATUSES, ALL_STATUSES, ALLOWED_FROM, Status

JOB = JobTable.__table__  # type: ignore[attr-defined]
LOG = JobLog.__table__  # type: ignore[attr-defined]
COUNT = JobCount.__table__  # type: ignore[attr-defined]
_COLUMNS = [JOB.c[name] for name in JOB_COLUMNS]
_ACTIVE = [s.value for s in ACTIVE_STATUSES]


def _jobs(rows: Any) -> list[Job]:
    """Rows of ``_COLUMNS`` (the order of Job's fields) as records."""
    return [Job(*row) for row in rows]


def _one(rows: Any) -> Job | None:
    for row in rows:
        return Job(*row)
    return None


def _status_in(statuses: Iterable[str]) -> sa.ColumnElement[bool]:
    """status IN (...), written out (no expanding parameter, so it can be Prepared)."""
    return sa.or_(*(JOB.c.status == s for s in statuses))


@lru_cache(maxsize=8)
def _insert_stmt(exclusive: bool, dialect: str) -> Prepared:
    """INSERT the job if fewer than :max_pending jobs are pending and, for an exclusive kind,
    no job of its kind is unfinished; nothing if an unfinished job holds its dedupe key."""
    row = sa.select(*[sa.bindparam(c.name, type_=c.type) for c in _COLUMNS])
    pending = sa.select(sa.func.coalesce(sa.func.sum(COUNT.c.n), 0)).where(
        COUNT.c.status == Status.PENDING.value).scalar_subquery()
    conditions = [pending < sa.bindparam("max_pending")]
    if exclusive:
        conditions.append(_unfinished_of_kind() == 0)
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    return Prepared(insert(JOB).from_select(JOB_COLUMNS, row.where(*conditions)).on_conflict_do_nothing())


def _unfinished_of_kind() -> sa.ScalarSelect[Any]:
    """How many jobs of :kind are unfinished (from the counts: no scan of the table)."""
    return sa.select(sa.func.coalesce(sa.func.sum(COUNT.c.n), 0)).where(
        COUNT.c.kind == sa.bindparam("kind"),
        sa.or_(*(COUNT.c.status == s for s in [Status.PENDING.value, *_ACTIVE]))).scalar_subquery()


_BY_KEY = Prepared(sa.select(*_COLUMNS).where(
    JOB.c.dedupe_key == sa.bindparam("key"), _status_in([Status.PENDING.value, *_ACTIVE])))


@operation
def insert_job(conn: sa.Connection, job: Job, max_pending: int, *,
               exclusive: bool = False) -> str | Job | None:
    """Write ``job`` if the queue has room (and, for an ``exclusive`` kind, no job of its kind is
    unfinished), in one statement. None when written; the unfinished job holding the same
    ``dedupe_key`` if there is one; else why not: "full" or "busy"."""
    if conn.dialect.name == "postgresql":
        # PostgreSQL runs concurrent inserts side by side: serialise the count-and-insert
        # (SQLite already does, having one writer at a time)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(728101)"))
    stmt = _insert_stmt(exclusive, conn.dialect.name)
    if stmt.rowcount(conn, {**job.values(), "max_pending": max_pending}):
        return None
    if job.dedupe_key is not None:
        holder = _one(_BY_KEY.rows(conn, {"key": job.dedupe_key}))
        if holder is not None:
            return holder
    if exclusive and conn.execute(sa.select(_unfinished_of_kind()), {"kind": job.kind}).scalar():
        return "busy"
    return "full"


_GET = Prepared(sa.select(*_COLUMNS).where(JOB.c.id == sa.bindparam("job_id")))


@reads
def get_job(conn: sa.Connection, job_id: str) -> Job | None:
    return _one(_GET.rows(conn, {"job_id": job_id}))


@operation
def delete_job(conn: sa.Connection, job_id: str) -> None:
    conn.execute(sa.delete(LOG).where(LOG.c.job_id == job_id))
    conn.execute(sa.delete(JOB).where(JOB.c.id == job_id))


_VERSION = (JOB.c.id, JOB.c.status, JOB.c.updated_at)
# an id search counts its matches up to this many (the total then reads "at least")
SEARCH_COUNT_CAP = 10_000


def id_range(q: str) -> tuple[str, str]:
    """Ids starting with ``q`` are the ids in [lo, hi): a range the primary key's index
    answers (a LIKE 'q%' would scan the table)."""
    return q, q[:-1] + chr(ord(q[-1]) + 1)


@lru_cache(maxsize=64)
def _list_stmts(kind: bool, status: bool, q: bool, cursor: str | None,
                columns: tuple[sa.Column[Any], ...]) -> tuple[Prepared, Prepared]:
    """(count, page of ``columns``) for the filters given: :kind, :status, :q (an id prefix,
    as the range :lo..:hi), newest first; ``cursor`` "before"/"after" pages from the row of
    :cursor_id on instead of by :offset (keyset: as fast on the last page as on the first)."""
    where = []
    if kind:
        where.append(JOB.c.kind == sa.bindparam("kind"))
    if status:
        where.append(JOB.c.status == sa.bindparam("status"))
    if q:
        where += [JOB.c.id >= sa.bindparam("lo"), JOB.c.id < sa.bindparam("hi")]
        # the matches of an id search, up to a cap
        matches = sa.select(sa.literal(1)).select_from(JOB).where(*where).limit(SEARCH_COUNT_CAP)
        count = sa.select(sa.func.count()).select_from(matches.subquery())
    else:  # the counts per kind and status: no scan of the table at any size
        count_where = [COUNT.c.kind == sa.bindparam("kind")] if kind else []
        if status:
            count_where.append(COUNT.c.status == sa.bindparam("status"))
        count = sa.select(sa.func.coalesce(sa.func.sum(COUNT.c.n), 0)).where(*count_where)
    order = [JOB.c.created_at.desc(), JOB.c.id.desc()]
    if cursor is not None:
        def of_mark(column: sa.Column[Any]) -> sa.ScalarSelect[Any]:
            return sa.select(column).where(JOB.c.id == sa.bindparam("cursor_id")).scalar_subquery()

        row = sa.tuple_(JOB.c.created_at, JOB.c.id)
        mark_row = sa.tuple_(of_mark(JOB.c.created_at), of_mark(JOB.c.id))
        if cursor == "before":
            where.append(row < mark_row)
        else:
            where.append(row > mark_row)
            order = [JOB.c.created_at.asc(), JOB.c.id.asc()]
    page = sa.select(*columns).where(*where).order_by(*order).limit(sa.bindparam("limit"))
    if cursor is None:
        page = page.offset(sa.bindparam("offset"))
    return Prepared(count), Prepared(page)


def _list(conn: sa.Connection, columns: tuple[sa.Column[Any], ...], kind: str | None,
          status: str | None, q: str | None, limit: int, offset: int,
          before: str | None = None, after: str | None = None) -> tuple[list[Any], int]:
    q = (q or "").strip().lower()
    lo, hi = id_range(q) if q else ("", "")
    cursor = "before" if before else ("after" if after else None)
    count, page = _list_stmts(bool(kind), bool(status), bool(q), cursor, columns)
    params = {"kind": kind, "status": status, "lo": lo, "hi": hi, "limit": limit, "offset": offset,
              "cursor_id": before or after}
    total = count.rows(conn, params)[0][0]
    rows = page.rows(conn, params)
    return (rows[::-1] if cursor == "after" else rows), int(total or 0)


@reads
def list_jobs(conn: sa.Connection, *, kind: str | None = None, status: str | None = None,
              q: str | None = None, limit: int = 50, offset: int = 0, before: str | None = None,
              after: str | None = None) -> tuple[list[Job], int]:
    """A page of jobs, newest first, and how many match in all (an id search counts up to
    ``SEARCH_COUNT_CAP``). ``before``/``after``: the page older/newer than that job's row."""
    rows, total = _list(conn, tuple(_COLUMNS), kind, status, q, limit, offset, before, after)
    return _jobs(rows), total


@reads
def list_job_versions(conn: sa.Connection, *, kind: str | None = None, status: str | None = None,
                      q: str | None = None, limit: int = 50, offset: int = 0,
                      before: str | None = None, after: str | None = None
                      ) -> tuple[list[tuple[str, str, datetime]], int]:
    """The same page as ``list_jobs``, as (id, status, updated_at) only: enough to tell which
    rows a page already has rendered (see web.render.job_row), without decoding whole rows."""
    return _list(conn, _VERSION, kind, status, q, limit, offset, before, after)


@reads
def get_jobs(conn: sa.Connection, job_ids: list[str]) -> list[Job]:
    """The jobs of these ids that exist, in no particular order."""
    if not job_ids:
        return []
    return _jobs(conn.execute(sa.select(*_COLUMNS).where(JOB.c.id.in_(job_ids))))


@reads
def jobs_in(conn: sa.Connection, statuses: Iterable[str], limit: int = 50,
            newest_first: bool = True) -> list[Job]:
    order = JOB.c.updated_at.desc() if newest_first else JOB.c.created_at
    stmt = sa.select(*_COLUMNS).where(JOB.c.status.in_(list(statuses))).order_by(order).limit(limit)
    return _jobs(conn.execute(stmt))


_COUNTS = Prepared(sa.select(COUNT.c.status, sa.func.sum(COUNT.c.n)).group_by(COUNT.c.status))
# one status at a time: each is a search of the (status, created_at) index; with the statuses
# OR-ed together SQLite walks the created_at index instead, through every finished job
_IN_STATUS = Prepared(sa.select(*_COLUMNS).where(JOB.c.status == sa.bindparam("status"))
                      .order_by(JOB.c.created_at).limit(sa.bindparam("active_limit")))
_FAILED = Prepared(sa.select(*_COLUMNS).where(JOB.c.status == Status.FAILED.value)
                   .order_by(JOB.c.created_at.desc()).limit(sa.bindparam("recent")))
# the latest finished jobs' warnings only: the few with some are then read whole
_FINISHED = Prepared(sa.select(JOB.c.id, JOB.c.warnings).where(JOB.c.finished_at.is_not(None))
                     .order_by(JOB.c.finished_at.desc()).limit(200))


@reads
def overview(conn: sa.Connection, active_limit: int = 20, recent: int = 5) -> dict[str, Any]:
    """Counts by status, the unfinished jobs (oldest first), the latest failures and the latest
    finished jobs with warnings, read in one transaction."""
    counts = dict.fromkeys(ALL_STATUSES, 0)
    for status, n in _COUNTS.rows(conn):
        counts[status] = int(n)
    params = {"active_limit": active_limit, "recent": recent}
    warned_ids = [job_id for job_id, warnings in _FINISHED.rows(conn) if warnings][:recent]
    warned = [job for job_id in warned_ids for job in _jobs(_GET.rows(conn, {"job_id": job_id}))]
    running = sorted((job for status in (Status.PENDING.value, *_ACTIVE) if counts.get(status)
                      for job in _jobs(_IN_STATUS.rows(conn, {**params, "status": status}))),
                     key=lambda j: j.created_at)[:active_limit]
    return {"counts": counts, "running": running,
            "failures": _jobs(_FAILED.rows(conn, params)), "warned": warned}


@shared_reads
def count_unfinished(conn: sa.Connection, kinds: tuple[str, ...] | None = None) -> int:
    """Jobs pending or on their way (of these kinds), from the counts: a busy check every
    trigger makes, shared by those made at once."""
    stmt = sa.select(sa.func.sum(COUNT.c.n)).where(
        COUNT.c.status.in_([Status.PENDING.value, *_ACTIVE]))
    if kinds is not None:
        stmt = stmt.where(COUNT.c.kind.in_(list(kinds)))
    return int(conn.execute(stmt).scalar() or 0)


@lru_cache(maxsize=256)
def _update_stmt(keys: tuple[str, ...], only_from: tuple[str, ...] | None,
                 same_attempt: bool) -> Prepared:
    """UPDATE :job_id's columns ``keys`` (each from the parameter ``set_<key>``) if its status
    is in ``only_from`` (and, with ``same_attempt``, its arq id still :arq_was); RETURNING it."""
    stmt = sa.update(JOB).where(JOB.c.id == sa.bindparam("job_id"))
    if only_from is not None:
        stmt = stmt.where(_status_in(only_from))
    if same_attempt:
        stmt = stmt.where(JOB.c.arq_job_id.is_not_distinct_from(sa.bindparam("arq_was")))
    values = {key: sa.bindparam(f"set_{key}", type_=JOB.c[key].type) for key in keys}
    return Prepared(stmt.values(values).returning(*_COLUMNS))


_NO_ARQ_ID = object()


def _update(conn: sa.Connection, job_id: str, values: dict[str, Any],
            only_from: Iterable[str] | None, arq_was: Any = _NO_ARQ_ID) -> Job | None:
    values = {**values, "updated_at": utcnow()}
    stmt = _update_stmt(tuple(sorted(values)), None if only_from is None else tuple(sorted(only_from)),
                        arq_was is not _NO_ARQ_ID)
    params = {f"set_{key}": value for key, value in values.items()}
    return _one(stmt.rows(conn, {"job_id": job_id, "arq_was": arq_was, **params}))


@operation
def update_job(conn: sa.Connection, job_id: str, values: dict[str, Any], *,
               only_from: Iterable[str] | None = None) -> Job | None:
    """UPDATE one row if it is still in ``only_from``; the updated row, or None if it was not."""
    return _update(conn, job_id, values, only_from)


_CLAIM = Prepared(sa.update(JOB)
          .where(JOB.c.id == sa.bindparam("job_id"), JOB.c.status == Status.PENDING.value,
                 JOB.c.arq_job_id == sa.bindparam("arq_id"))
          .values(status=sa.bindparam("to"),
                  started_at=sa.func.coalesce(JOB.c.started_at, sa.bindparam("at", type_=UTCDateTime)),
                  attempts=JOB.c.attempts + 1, worker_id=sa.bindparam("worker_id"),
                  heartbeat_at=sa.bindparam("at", type_=UTCDateTime), error=None,
                  updated_at=sa.bindparam("at", type_=UTCDateTime))
          .returning(*_COLUMNS))


@operation
def claim(conn: sa.Connection, job_id: str, arq_id: str | None, to: Status, worker_id: str,
          at: datetime) -> Job | None:
    """A worker takes a job: only a pending row still waiting for this very arq job moves."""
    assert Status.PENDING in ALLOWED_FROM[to]
    return _one(_CLAIM.rows(conn, {"job_id": job_id, "arq_id": arq_id, "to": to.value,
                                   "worker_id": worker_id, "at": at}))


def _allowed(to: Status, only_from: Iterable[Status] | None) -> list[str]:
    allowed = ALLOWED_FROM[to] if only_from is None else frozenset(only_from) & ALLOWED_FROM[to]
    return [s.value for s in allowed]


@operation
def transition(conn: sa.Connection, job_id: str, to: Status, values: dict[str, Any] | None = None,
               *, only_from: Iterable[Status] | None = None) -> Job | None:
    """Move a job to ``to`` if it is in a status allowed to move there (and in ``only_from``)."""
    return _update(conn, job_id, {**(values or {}), "status": to.value}, _allowed(to, only_from))


_INSERT_LOG = Prepared(sa.insert(LOG).values(
    job_id=sa.bindparam("job_id"), message=sa.bindparam("message"), level=sa.bindparam("level"),
    at=sa.bindparam("at", type_=UTCDateTime)).returning(LOG.c.id))
_TRIM_LOG = Prepared(sa.delete(LOG).where(
    LOG.c.job_id == sa.bindparam("job_id"),
    LOG.c.id <= (sa.select(LOG.c.id).where(LOG.c.job_id == sa.bindparam("job_id"))
                 .order_by(LOG.c.id.desc()).offset(sa.bindparam("keep")).limit(1).scalar_subquery())))


def _insert_log(conn: sa.Connection, job_id: str, message: str, level: str,
                keep: int) -> dict[str, Any]:
    at, message = utcnow(), message[:4000]
    line_id = _INSERT_LOG.rows(conn, {"job_id": job_id, "message": message, "level": level,
                                      "at": at})[0][0]
    if line_id % 25 == 0:  # now and then, keep only the newest ``keep`` lines of the job
        _TRIM_LOG.rowcount(conn, {"job_id": job_id, "keep": keep})
    return log_line(line_id, at, level, message)


@operation
def add_log(conn: sa.Connection, job_id: str, message: str, level: str = "info",
            keep: int = 500) -> dict[str, Any]:
    """Append a log line to a job (its newest ``keep`` lines are kept); the line."""
    return _insert_log(conn, job_id, message, level, keep)


@operation
def finish_job(conn: sa.Connection, job_id: str, to: Status, values: dict[str, Any], *,
               only_from: Iterable[Status], log_message: str, log_level: str = "info",
               keep: int = 500) -> tuple[Job, dict[str, Any]] | None:
    """The final status and its log line, in one transaction; None if the row had moved on."""
    job = _update(conn, job_id, {**values, "status": to.value}, _allowed(to, only_from))
    if job is None:
        return None
    return job, _insert_log(conn, job_id, log_message, log_level, keep)


@operation
def requeue(conn: sa.Connection, job_id: str, from_status: str, old_arq_id: str | None,
            new_arq_id: str, message: str, keep: int = 500) -> tuple[Job, dict[str, Any]] | None:
    """Hand a job back to the queue under a new arq id, if it is still where we saw it (same
    status, same arq id), with a warning line saying why; None if it had moved on."""
    values: dict[str, Any] = {"arq_job_id": new_arq_id, "worker_id": None, "heartbeat_at": None,
                              "phase": message[:500], "status": Status.PENDING.value}
    only_from = [from_status] if from_status == Status.PENDING else _allowed(
        Status.PENDING, [Status(from_status)])
    job = _update(conn, job_id, values, only_from, arq_was=old_arq_id)
    if job is None:
        return None
    return job, _insert_log(conn, job_id, message, "warning", keep)


@operation
def request_cancel(conn: sa.Connection, job_id: str, at: datetime) -> tuple[Job, str] | None:
    """Cancel a job: a pending one at once ("cancelled"); an unfinished one is marked for its
    worker to stop ("stopping"; the first request's time is kept); a finished one is left as
    it is ("finished"). None when there is no such job."""
    cancelled = _update(conn, job_id, {"status": Status.CANCELLED.value, "cancel_requested_at": at,
                                       "finished_at": at, "phase": "Cancelled before it started"},
                        [Status.PENDING.value])
    if cancelled is not None:
        return cancelled, "cancelled"
    job = get_job.sync(conn, job_id)  # type: ignore[attr-defined]
    if job is not None and job.status in _ACTIVE:
        stopping = _update(conn, job_id, {"cancel_requested_at": job.cancel_requested_at or at},
                           _ACTIVE)
        if stopping is not None:
            return stopping, "stopping"
        job = get_job.sync(conn, job_id)  # type: ignore[attr-defined]  # it finished meanwhile
    return (job, "finished") if job is not None else None


@reads
def job_logs(conn: sa.Connection, job_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The newest ``limit`` log lines of a job, oldest first."""
    stmt = (sa.select(LOG.c.id, LOG.c.at, LOG.c.level, LOG.c.message).where(LOG.c.job_id == job_id)
            .order_by(LOG.c.id.desc()).limit(limit))
    return [log_line(*row) for row in reversed(conn.execute(stmt).all())]


@reads
def job_with_logs(conn: sa.Connection, job_id: str,
                  limit: int = 200) -> tuple[Job, list[dict[str, Any]]] | None:
    """A job and its newest log lines, read together."""
    job = get_job.sync(conn, job_id)  # type: ignore[attr-defined]
    if job is None:
        return None
    return job, job_logs.sync(conn, job_id, limit)  # type: ignore[attr-defined]


@reads
def stale_active_jobs(conn: sa.Connection, older_than: datetime) -> list[Job]:
    return _jobs(conn.execute(sa.select(*_COLUMNS).where(
        JOB.c.status.in_(_ACTIVE),
        sa.or_(JOB.c.heartbeat_at.is_(None), JOB.c.heartbeat_at < older_than))))


@reads
def pending_jobs_older_than(conn: sa.Connection, older_than: datetime, limit: int = 500) -> list[Job]:
    return _jobs(conn.execute(
        sa.select(*_COLUMNS).where(JOB.c.status == Status.PENDING.value, JOB.c.updated_at < older_than)
        .order_by(JOB.c.created_at).limit(limit)))


@operation
def heartbeat(conn: sa.Connection, job_ids: list[str], at: datetime) -> list[str]:
    """Mark the running jobs a worker holds as alive; the ids whose cancel was requested."""
    if not job_ids:
        return []
    rows = conn.execute(sa.update(JOB).where(JOB.c.id.in_(job_ids), JOB.c.status.in_(_ACTIVE))
                        .values(heartbeat_at=at).returning(JOB.c.id, JOB.c.cancel_requested_at))
    return [job_id for job_id, cancel_requested_at in rows if cancel_requested_at is not None]
