"""Reads and writes of model-day results and of each simulation job's details."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from jobs.db import operation, reads
from jobs.simulation.tables import ModelDayResult, SimulationDay, day_detail

_RESULT = ModelDayResult.__table__  # type: ignore[attr-defined]
_DAY = SimulationDay.__table__  # type: ignore[attr-defined]


@reads
def completed_days(conn: sa.Connection, models: Iterable[str], start: date,
                   end: date) -> dict[str, set[date]]:
    models = list(models)
    out: dict[str, set[date]] = {m: set() for m in models}
    stmt = sa.select(_RESULT.c.model, _RESULT.c.day).where(
        _RESULT.c.model.in_(models), _RESULT.c.day >= start, _RESULT.c.day <= end)
    for model, day in conn.execute(stmt):
        out[model].add(day)
    return out


@reads
def last_completed_days(conn: sa.Connection, models: Iterable[str]) -> dict[str, date | None]:
    models = list(models)
    out: dict[str, date | None] = {m: None for m in models}
    stmt = (sa.select(_RESULT.c.model, sa.func.max(_RESULT.c.day))
            .where(_RESULT.c.model.in_(models)).group_by(_RESULT.c.model))
    for model, day in conn.execute(stmt):
        out[model] = day
    return out


@reads
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


@reads
def details(conn: sa.Connection, job_id: str) -> list[dict[str, Any]]:
    """Every model-day of a job as its details list shows it, by day then model."""
    stmt = sa.select(_DAY).where(_DAY.c.job_id == job_id).order_by(_DAY.c.day, _DAY.c.model)
    return [day_detail(row) for row in conn.execute(stmt).mappings()]


def _results_filter(job_id: str | None, start: date | None, end: date | None,
                    models: list[str] | None) -> list[Any]:
    where: list[Any] = []
    if job_id:
        where.append(_RESULT.c.job_id == job_id)
    if start:
        where.append(_RESULT.c.day >= start)
    if end:
        where.append(_RESULT.c.day <= end)
    if models:
        where.append(_RESULT.c.model.in_(models))
    return where


def _position_row(row: Any) -> dict[str, Any]:
    return {"model": row["model"], "day": row["day"], "job_id": row["job_id"], "cash": row["cash"],
            "value": row["value"], "positions": row["positions"] or {},
            "prices": row["prices"] or {}, "trades": row["trades"] or []}


@reads
def results_page(conn: sa.Connection, job_id: str | None, start: date | None, end: date | None,
                 models: list[str] | None, limit: int | None, offset: int
                 ) -> tuple[list[dict[str, Any]], int]:
    """Stored model-days matching the filters, by day then model, each with its job's detail
    (status, timings, warnings) of that model-day; and how many match in all."""
    where = _results_filter(job_id, start, end, models)
    total = conn.execute(sa.select(sa.func.count()).select_from(_RESULT).where(*where)).scalar_one()
    if not total:
        return [], 0
    joined = _RESULT.outerjoin(_DAY, sa.and_(_DAY.c.job_id == _RESULT.c.job_id,
                                             _DAY.c.model == _RESULT.c.model,
                                             _DAY.c.day == _RESULT.c.day))
    stmt = (sa.select(_RESULT, _DAY.c.status, _DAY.c.started_at, _DAY.c.completed_at.label("day_done"),
                      _DAY.c.duration_seconds, _DAY.c.warnings)
            .select_from(joined).where(*where).order_by(_RESULT.c.day, _RESULT.c.model)
            .offset(offset))
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = []
    for row in conn.execute(stmt).mappings():
        rows.append({**_position_row(row), "status": row["status"] or "completed",
                     "started_at": row["started_at"],
                     "completed_at": row["day_done"] or row["completed_at"],
                     "duration_seconds": row["duration_seconds"],
                     "warnings": list(row["warnings"] or [])})
    return rows, int(total)


@reads
def positions_on(conn: sa.Connection, keys: Iterable[tuple[str, date]]
                 ) -> dict[tuple[str, date], dict[str, Any]]:
    """The stored model-days ``(model, day)`` (cash, positions and their prices, value)."""
    keys = list(keys)
    out: dict[tuple[str, date], dict[str, Any]] = {}
    for i in range(0, len(keys), 200):
        chunk = keys[i:i + 200]
        cond = sa.or_(*(sa.and_(_RESULT.c.model == m, _RESULT.c.day == d) for m, d in chunk))
        for row in conn.execute(sa.select(_RESULT).where(cond)).mappings():
            out[(row["model"], row["day"])] = _position_row(row)
    return out


@reads
def daily_series(conn: sa.Connection, models: Iterable[str], end: date
                 ) -> dict[str, list[tuple[date, float, int]]]:
    """Each model's ``(day, value, trades that day)`` from its first day up to ``end``."""
    models = list(models)
    out: dict[str, list[tuple[date, float, int]]] = {m: [] for m in models}
    if not models:
        return out
    trades = sa.func.json_array_length(_RESULT.c.trades)
    stmt = (sa.select(_RESULT.c.model, _RESULT.c.day, _RESULT.c.value, trades)
            .where(_RESULT.c.model.in_(models), _RESULT.c.day <= end)
            .order_by(_RESULT.c.model, _RESULT.c.day))
    for model, day, value, n in conn.execute(stmt):
        out[model].append((day, float(value), int(n or 0)))
    return out


@reads
def has_results(conn: sa.Connection, model: str) -> bool:
    return conn.execute(sa.select(_RESULT.c.model).where(_RESULT.c.model == model).limit(1)).first() \
        is not None
