"""Reads and writes of model-day results and of each simulation job's details."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select

from jobs.db import Database, dated_series
from jobs.simulation.tables import ModelDayResult, SimulationDay

_RESULT = ModelDayResult.__table__  # type: ignore[attr-defined]
_DAY = SimulationDay.__table__  # type: ignore[attr-defined]


async def completed_days(db: Database, models: Iterable[str], start: date,
                         end: date) -> dict[str, set[date]]:
    models = list(models)
    out: dict[str, set[date]] = {m: set() for m in models}
    async with db.session() as s:
        stmt = select(ModelDayResult.model, ModelDayResult.day).where(
            col(ModelDayResult.model).in_(models), col(ModelDayResult.day) >= start,
            col(ModelDayResult.day) <= end)
        for model, day in (await s.exec(stmt)).all():
            out[model].add(day)
    return out


async def last_completed_days(db: Database, models: Iterable[str]) -> dict[str, date | None]:
    models = list(models)
    out: dict[str, date | None] = {m: None for m in models}
    async with db.session() as s:
        stmt = (select(ModelDayResult.model, sa.func.max(ModelDayResult.day))
                .where(col(ModelDayResult.model).in_(models)).group_by(ModelDayResult.model))
        for model, day in (await s.exec(stmt)).all():
            out[model] = day
    return out


async def result_before(db: Database, model: str, day: date) -> ModelDayResult | None:
    """The model's latest completed day before ``day``: the state it carries into ``day``."""
    async with db.session() as s:
        stmt = (select(ModelDayResult).where(col(ModelDayResult.model) == model,
                                             col(ModelDayResult.day) < day)
                .order_by(col(ModelDayResult.day).desc()).limit(1))
        return (await s.exec(stmt)).first()


async def init_details(db: Database, job_id: str, rows: list[tuple[str, date, str]]) -> None:
    """(model, day, status) for every model-day of the job, replacing any earlier attempt's."""
    async with db.session() as s:
        await s.execute(sa.delete(SimulationDay).where(col(SimulationDay.job_id) == job_id))
        for i in range(0, len(rows), 500):
            s.add_all([SimulationDay(job_id=job_id, model=m, day=d, status=st)
                       for m, d, st in rows[i:i + 500]])
            await s.flush()
        await s.commit()


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


async def finish_days(db: Database, job_id: str, outcomes: list[DayOutcome]) -> None:
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
                "duration_seconds": round((o.finished - o.started).total_seconds(), 4)}
               for o in outcomes]
    async with db.session() as s:
        if results:
            insert = sqlite_insert if db.url.startswith("sqlite") else pg_insert
            stmt = insert(_RESULT).values(results)
            stmt = stmt.on_conflict_do_update(
                index_elements=["model", "day"],
                set_={c: stmt.excluded[c] for c in results[0] if c not in ("model", "day")})
            await s.execute(stmt)
        await s.execute(
            sa.update(_DAY).where(_DAY.c.job_id == job_id, _DAY.c.model == sa.bindparam("b_model"),
                                  _DAY.c.day == sa.bindparam("b_day"))
            .values(status=sa.bindparam("status"), error=sa.bindparam("error"),
                    started_at=sa.bindparam("started_at"), completed_at=sa.bindparam("completed_at"),
                    duration_seconds=sa.bindparam("duration_seconds")),
            details)
        await s.commit()


async def details(db: Database, job_id: str) -> list[SimulationDay]:
    async with db.session() as s:
        stmt = (select(SimulationDay).where(col(SimulationDay.job_id) == job_id)
                .order_by(SimulationDay.day, SimulationDay.model))
        return list((await s.exec(stmt)).all())


async def equity_curves(db: Database, models: Iterable[str], start: date,
                        end: date) -> dict[str, list[tuple[date, float]]]:
    return await dated_series(db, col(ModelDayResult.model), col(ModelDayResult.day),
                              col(ModelDayResult.value), list(models), start, end)


async def trade_counts(db: Database, models: Iterable[str], start: date, end: date) -> dict[str, int]:
    models = list(models)
    counts = dict.fromkeys(models, 0)
    async with db.session() as s:
        stmt = select(ModelDayResult.model, ModelDayResult.trades).where(
            col(ModelDayResult.model).in_(models), col(ModelDayResult.day) >= start,
            col(ModelDayResult.day) <= end)
        for model, trades in (await s.exec(stmt)).all():
            counts[model] += len(trades or [])
    return counts
