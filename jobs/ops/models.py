"""Health samples: one row per sample (``raw``), or per hour once old (``hour``), and beside
each the jobs finished in it per kind, with histograms of their durations and times queued.

The histograms are columns (one per bucket of ``BOUNDS``), not JSON: the history of 30 days
adds them up in SQL (``sum(d3)``...), where parsing thousands of JSON documents per request
would cost tens of milliseconds. ``epoch`` (whole seconds) lets charts bucket rows in SQL the
same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from jobs.db import UTCDateTime, utcnow

# upper bounds (seconds) of the histograms' buckets; the last one is open
BOUNDS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                             600, 1800, 3600, math.inf)
DURATION_COLUMNS = tuple(f"d{i}" for i in range(len(BOUNDS)))
QUEUED_COLUMNS = tuple(f"q{i}" for i in range(len(BOUNDS)))


class HealthSample(SQLModel, table=True):
    __tablename__ = "health_sample"
    __table_args__ = (sa.Index("ix_health_sample_epoch", "epoch"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False))
    epoch: int = 0  # ``at`` in whole seconds since 1970 (UTC)
    resolution: str = Field(default="raw", max_length=8)  # raw | hour
    samples: int = 1  # how many raw samples this row stands for
    db_ok: bool = True
    redis_ok: bool = True
    db_ms: float | None = None
    redis_ms: float | None = None
    workers: int = 0
    queue_pending: int = 0
    queue_active: int = 0
    lag_ms: float | None = None  # the worst web process's max lag
    finished: int = 0
    failed: int = 0
    # the details of a raw sample: queue per status, lag per web process, workers, errors
    data: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))


HEALTH_KIND = sa.Table(
    "health_kind", SQLModel.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("epoch", sa.Integer, nullable=False),  # its sample's
    sa.Column("resolution", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("finished", sa.Integer, nullable=False),
    sa.Column("failed", sa.Integer, nullable=False),
    sa.Column("duration_sum", sa.Float, nullable=False),
    *(sa.Column(name, sa.Integer, nullable=False) for name in DURATION_COLUMNS + QUEUED_COLUMNS),
    sa.Index("ix_health_kind_epoch", "epoch"),
)
