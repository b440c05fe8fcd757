"""The engine's tables (jobs and their log lines) and ``Job``, a job as the code passes it
around. Domain tables live in their subpackages."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from jobs.db import UTCDateTime, utcnow
from jobs.status import ALL_STATUSES, TERMINAL_STATUSES, UNFINISHED_STATUSES, Status

_STATUS_CHECK = "status IN (" + ", ".join(f"'{s}'" for s in ALL_STATUSES) + ")"
_UNFINISHED_KEYED = ("dedupe_key IS NOT NULL AND status IN ("
                     + ", ".join(f"'{s}'" for s in sorted(UNFINISHED_STATUSES)) + ")")


class JobTable(SQLModel, table=True):
    """The ``job`` table (schema and migrations). Rows come back as ``Job`` records."""

    __tablename__ = "job"
    __table_args__ = (
        sa.CheckConstraint(_STATUS_CHECK, name="ck_job_status"),
        sa.Index("ix_job_status_created", "status", "created_at"),
        sa.Index("ix_job_kind_created", "kind", "created_at"),
        sa.Index("ix_job_created", "created_at", "id"),
        sa.Index("ix_job_finished", "finished_at"),
        # one unfinished job per key (see JobKind.key): the database refuses a second one
        sa.Index("ux_job_unfinished_key", "dedupe_key", unique=True,
                 sqlite_where=sa.text(_UNFINISHED_KEYED), postgresql_where=sa.text(_UNFINISHED_KEYED)),
    )

    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=64)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    status: str = Field(default=Status.PENDING.value, max_length=20)
    progress_done: int = 0
    progress_total: int = 0
    phase: str = Field(default="", max_length=500)
    warnings: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    result: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    attempts: int = 0
    arq_job_id: str | None = Field(default=None, max_length=80)
    worker_id: str | None = Field(default=None, max_length=80)
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime, nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime, nullable=True))
    heartbeat_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime, nullable=True))
    cancel_requested_at: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime, nullable=True)
    )
    dedupe_key: str | None = Field(default=None, max_length=200)


class JobCount(SQLModel, table=True):
    """How many jobs of each kind are in each status, kept by triggers on ``job`` (migration
    0005) in the same transaction as the change: the queue limit, the overview, the jobs
    list's totals and a kind's busy check read a few rows here instead of counting the table.
    (On SQLite, a migration that rebuilds the ``job`` table drops its triggers: it must create
    them again.)"""

    __tablename__ = "job_count"

    kind: str = Field(primary_key=True, max_length=64)
    status: str = Field(primary_key=True, max_length=20)
    n: int = 0


@dataclass(slots=True)
class Job:
    """One job: a row of the ``job`` table as plain data (built in ~1 µs; an ORM or pydantic
    object costs 5-35 µs, which a page of 25 rows or a worker's every claim would pay)."""

    id: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    status: str = Status.PENDING.value
    progress_done: int = 0
    progress_total: int = 0
    phase: str = ""
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    result: dict[str, Any] | None = None
    attempts: int = 0
    arq_job_id: str | None = None
    worker_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    dedupe_key: str | None = None

    def values(self) -> dict[str, Any]:
        """Column name -> value, for an INSERT."""
        return {name: getattr(self, name) for name in JOB_COLUMNS}

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        return round((end - self.started_at).total_seconds(), 3)

    @property
    def percent(self) -> int:
        if self.progress_total <= 0:
            return 100 if self.status == Status.COMPLETED else 0
        return max(0, min(100, round(100 * self.progress_done / self.progress_total)))

    def to_api(self) -> dict[str, Any]:
        def iso(v: datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {
            "id": self.id,
            "kind": self.kind,
            "params": self.params,
            "status": self.status,
            "progress": {"done": self.progress_done, "total": self.progress_total,
                         "phase": self.phase, "percent": self.percent},
            "warnings": list(self.warnings or []),
            "error": self.error,
            "result": self.result,
            "attempts": self.attempts,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "cancel_requested_at": iso(self.cancel_requested_at),
            "duration_seconds": self.duration_seconds,
        }


JOB_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Job))


class JobLog(SQLModel, table=True):
    __tablename__ = "job_log"
    __table_args__ = (sa.Index("ix_job_log_job_id_id", "job_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(sa_column=sa.Column(sa.String(32), sa.ForeignKey("job.id", ondelete="CASCADE"),
                                            nullable=False))
    at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False))
    level: str = Field(default="info", max_length=10)
    message: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


def log_line(id_: int, at: datetime, level: str, message: str) -> dict[str, Any]:
    """A log line as the API, the page and the events show it."""
    return {"id": id_, "at": at.isoformat(), "level": level, "message": message}
