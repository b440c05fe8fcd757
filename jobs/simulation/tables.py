"""Simulation tables: each model-day's result (one per model and day), and each job's details."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from jobs.db import UTCDateTime, utcnow

MODEL_DAY_STATUSES = ("pending", "running", "completed", "failed", "skipped")


class ModelDayResult(SQLModel, table=True):
    """The completed state of a model at the close of a day: carried into the next day."""

    __tablename__ = "model_day_result"

    model: str = Field(primary_key=True, max_length=64)
    day: date = Field(primary_key=True)
    job_id: str = Field(max_length=32)
    cash: float
    value: float
    positions: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    prices: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    trades: list[dict[str, Any]] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    state: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    completed_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False))


class SimulationDay(SQLModel, table=True):
    """One model-day of one simulation job, as its details list shows it."""

    __tablename__ = "simulation_day"
    __table_args__ = (
        sa.CheckConstraint("status IN (" + ", ".join(f"'{s}'" for s in MODEL_DAY_STATUSES) + ")",
                           name="ck_simulation_day_status"),
    )

    job_id: str = Field(sa_column=sa.Column(sa.String(32), sa.ForeignKey("job.id", ondelete="CASCADE"),
                                            primary_key=True))
    model: str = Field(primary_key=True, max_length=64)
    day: date = Field(primary_key=True)
    status: str = Field(default="pending", max_length=16)
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    started_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime, nullable=True))
    completed_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime, nullable=True))
    duration_seconds: float | None = None
    # what the model-day ran into without failing (a wanted trade dropped, a symbol unpriced)
    warnings: list[str] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))


def day_detail(row: Any) -> dict[str, Any]:
    """A ``simulation_day`` row as the status API and the grid show it."""
    def iso(v: Any) -> str | None:
        return v.isoformat() if v else None

    return {"date": row["day"].isoformat(), "model": row["model"], "status": row["status"],
            "error": row["error"], "started_at": iso(row["started_at"]),
            "completed_at": iso(row["completed_at"]), "duration_seconds": row["duration_seconds"],
            "warnings": list(row["warnings"] or [])}
