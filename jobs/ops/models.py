"""Health samples: one row per sample (``raw``), or per hour once old (``hour``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from jobs.db import UTCDateTime, utcnow


class HealthSample(SQLModel, table=True):
    __tablename__ = "health_sample"
    __table_args__ = (sa.Index("ix_health_sample_at", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False))
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
    # the details: queue per status, lag per web process, workers, per-kind figures
    data: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
