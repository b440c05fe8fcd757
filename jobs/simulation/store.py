"""Reads and writes of model-day results and of each simulation job's details."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from jobs.db import Database, dated_series, operation
from jobs.simulation.tables import ModelDayResult, SimulationDay, day_detail

_RESULT = ModelDayResult.__table__  # type: ignore[attr-defined]
_DAY = SimulationDay.__table__  # type: ignore[attr-defined]


@operation
def completed_days(conn: sa.Connection, models: Iterable[str], start: date,
                   end: date) -> dict[str, set[date]]:
    models = list(models)
    out: dict[str, set[date]] = {m: set() for m in models}
    stmt = sa.select(_RESULT.c.model, _RESULT.c.day).where(
        _RESULT.c.model.in_(models), _RESULT.c.day >= start, _RESULT.c.day <= end)
    for model, day in conn.execute(stmt):
        out[model].add(day)
    return out


@operation
def last_completed_days(conn: sa.Connection, models: Iterable[str]) -> dict[str, date | None]:
    models = list(models)
    out: dict[str, date | None] = {m: None for m in models}
    stmt = (sa.select(_RESULT.c.model, sa.func.max(_RESULT.c.day))
            .where(_RESULT.c.model.in_(models)).group_by(_RESULT.c.model))
    for model, day in conn.execute(stmt):
        out[model] = day
    return out


@operation
def result_before(conn: sa.Connection, model: str, day: date) -> dict[str, Any] | None:
    """The model's latest completed day before ``day``, as its next day takes it (see
    catalog.step): the state it carries into ``day``."""
    row = conn.execute(sa.select(_RESULT).where(_RESULT.c.model == model, _RESULT.c.day < day)
                       .order_by(_RESULT.c.day.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    return {"day": row["day"].isoformat(), "positions": row["positions"], "prices": row["prices"],
            "trades": row["trades"], "cash": row["cash"], "value": row["value"],
            "state": row["state"]}


@operation
def init_details(conn: sa.Connection, job_id: str,
                 rows: list[tuple[str, date, str, str | None]]) -> None:
    """(model, day, status, error) for every model-day of the job (a skipped one's error says
    why), replacing any earlier attempt's."""
    conn.execute(sa.delete(_DAY).where(_DAY.c.job_id == job_id))
    for i in range(0, len(rows), 500):
        conn.execute(sa.insert(_DAY), [{"job_id": job_id, "model": m, "day": d, "status": st,
                                        "error": err} for m, d, st, err in rows[i:i + 500]])


@dataclass(frozen=True)
class DayOutcome:
    model: str
    day: date
    record: dict[str, Any] | None  # None: failed
    error: str | None
    started: datetime
    finished: datetime

    @property
    def status(self) -> str:
        return "completed" if self.record is not None else "failed"


@operation
def finish_days(conn: sa.Connection, job_id: str, outcomes: list[DayOutcome]) -> None:
    """Record model-days' outcomes in one transaction; a completed one also stores (or replaces)
    its result, the state its model carries into the next day."""
    if not outcomes:
        return
    results = [{"model": o.model, "day": o.day, "job_id": job_id, "cash": o.record["cash"],
                "value": o.record["value"], "positions": o.record["positions"],
                "prices": o.record.get("prices") or {}, "trades": o.record["trades"],
                "state": o.record["state"], "completed_at": o.finished}
               for o in outcomes if o.record is not None]
    details = [{"b_model": o.model, "b_day": o.day, "status": o.status, "error": o.error,
                "started_at": o.started, "completed_at": o.finished,
                "duration_seconds": round((o.finished - o.started).total_seconds(), 4),
                "warnings": (o.record or {}).get("warnings") or None}
               for o in outcomes]
    if results:
        insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
        stmt = insert(_RESULT).values(results)
        stmt = stmt.on_conflict_do_update(
            index_elements=["model", "day"],
            set_={c: stmt.excluded[c] for c in results[0] if c not in ("model", "day")})
        conn.execute(stmt)
    conn.execute(
        sa.update(_DAY).where(_DAY.c.job_id == job_id, _DAY.c.model == sa.bindparam("b_model"),
                                  _DAY.c.day == sa.bindparam("b_day"))
        .values(status=sa.bindparam("status"), error=sa.bindparam("error"),
                started_at=sa.bindparam("started_at"), completed_at=sa.bindparam("completed_at"),
                duration_seconds=sa.bindparam("duration_seconds"),
                warnings=sa.bindparam("warnings", type_=sa.JSON)),
        details)


@operation
def details(conn: sa.Connection, job_id: str) -> list[dict[str, Any]]:
    """Every model-day of a job as its details list shows it, by day then model."""
    stmt = sa.select(_DAY).where(_DAY.c.job_id == job_id).order_by(_DAY.c.day, _DAY.c.model)
    return [day_detail(row) for row in conn.execute(stmt).mappings()]


async def equity_curves(db: Database, models: Iterable[str], start: date,
                        end: date) -> dict[str, list[tuple[date, float]]]:
    return await dated_series(db, _RESULT.c.model, _RESULT.c.day, _RESULT.c.value, list(models),
                              start, end)


@operation
def trade_counts(conn: sa.Connection, models: Iterable[str], start: date, end: date) -> dict[str, int]:
    models = list(models)
    counts = dict.fromkeys(models, 0)
    stmt = sa.select(_RESULT.c.model, _RESULT.c.trades).where(
        _RESULT.c.model.in_(models), _RESULT.c.day >= start, _RESULT.c.day <= end)
    for model, trades in conn.execute(stmt):
        counts[model] += len(trades or [])
    return counts
