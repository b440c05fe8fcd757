"""Stored daily bars: which days are held, saving new ones, coverage per symbol."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from jobs.db import Database, dated_series, operation, reads, utcnow
from jobs.prices.calendar import trading_day_count, trading_days
from jobs.prices.models import PriceBar, PriceCoverage

_BAR = PriceBar.__table__  # type: ignore[attr-defined]
_COVERAGE = PriceCoverage.__table__  # type: ignore[attr-defined]


@reads
def stored_days(conn: sa.Connection, symbols: Iterable[str], start: date,
                end: date) -> dict[str, set[date]]:
    symbols = list(symbols)
    held: dict[str, set[date]] = {s: set() for s in symbols}
    if not symbols:
        return held
    stmt = sa.select(_BAR.c.symbol, _BAR.c.day).where(
        _BAR.c.symbol.in_(symbols), _BAR.c.day >= start, _BAR.c.day <= end)
    for symbol, day in conn.execute(stmt):
        held[symbol].add(day)
    return held


async def missing_days(db: Database, symbols: Iterable[str], start: date,
                       end: date) -> dict[str, set[date]]:
    """For each symbol, the trading days in [start, end] not stored yet (empty set: complete)."""
    wanted = set(trading_days(start, end))
    held = await stored_days(db, symbols, start, end)
    return {symbol: wanted - days for symbol, days in held.items()}


@operation
def save_bars(conn: sa.Connection, bars: Iterable[Any], provider: str) -> int:
    """Insert bars not stored yet; a (symbol, day) already held is kept as it is."""
    now = utcnow()
    rows = [{"symbol": b.symbol, "day": b.day, "open": b.open, "high": b.high, "low": b.low,
             "close": b.close, "volume": int(b.volume), "provider": provider, "fetched_at": now}
            for b in bars]
    if not rows:
        return 0
    insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    saved = 0
    for i in range(0, len(rows), 500):
        stmt = insert(_BAR).values(rows[i:i + 500]).on_conflict_do_nothing(
            index_elements=["symbol", "day"])
        saved += max(conn.execute(stmt).rowcount or 0, 0)
    if saved:
        _update_coverage(conn, {r["symbol"] for r in rows}, insert)
    return saved


def _update_coverage(conn: sa.Connection, symbols: set[str], insert: Any) -> None:
    """Recount what is held of these symbols (their bars only, by the primary key's index)."""
    held = sa.select(_BAR.c.symbol, sa.func.min(_BAR.c.day).label("first_day"),
                     sa.func.max(_BAR.c.day).label("last_day"),
                     sa.func.count().label("days_held")).where(
        _BAR.c.symbol.in_(sorted(symbols))).group_by(_BAR.c.symbol)
    stmt = insert(_COVERAGE).from_select(["symbol", "first_day", "last_day", "days_held"], held)
    stmt = stmt.on_conflict_do_update(index_elements=["symbol"], set_={
        "first_day": stmt.excluded.first_day, "last_day": stmt.excluded.last_day,
        "days_held": stmt.excluded.days_held})
    conn.execute(stmt)


@dataclass(frozen=True)
class Coverage:
    symbol: str
    first_day: date
    last_day: date
    days_held: int
    gaps: int  # trading days between first and last that are not held

    def to_api(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "first_day": self.first_day.isoformat(),
                "last_day": self.last_day.isoformat(), "days_held": self.days_held,
                "gaps": self.gaps}


@reads
def coverage(conn: sa.Connection, symbols: Iterable[str] | None = None, *, limit: int | None = None,
             offset: int = 0) -> list[Coverage]:
    """Coverage per symbol, by name (all of ``symbols``, or a page of every symbol)."""
    stmt = sa.select(_COVERAGE.c.symbol, _COVERAGE.c.first_day, _COVERAGE.c.last_day,
                     _COVERAGE.c.days_held).order_by(_COVERAGE.c.symbol)
    if symbols is not None:
        stmt = stmt.where(_COVERAGE.c.symbol.in_(list(symbols)))
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    return [Coverage(symbol, first, last, int(held),
                     max(trading_day_count(first, last) - int(held), 0))
            for symbol, first, last, held in conn.execute(stmt)]


@reads
def symbols_held(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(_COVERAGE)).scalar_one())


def prioritize(missing: dict[str, set[date]]) -> list[str]:
    """Order symbols so that each next download completes the most requested days.

    A day is complete when no symbol lacks it. Greedy: take the symbol whose download
    completes the most days given those already taken; ties go to the fewest missing days,
    then the name. Symbols missing nothing are left out.

    Linear in the missing days (plus symbols²): each symbol's count of days it alone still
    lacks is kept up to date as symbols are taken, instead of being recounted every round.
    """
    todo = {s: d for s, d in missing.items() if d}
    lacking: dict[date, set[str]] = defaultdict(set)
    for symbol, days in todo.items():
        for day in days:
            lacking[day].add(symbol)
    completes = {s: 0 for s in todo}  # days that downloading s would complete now
    for symbols in lacking.values():
        if len(symbols) == 1:
            completes[next(iter(symbols))] += 1
    order: list[str] = []
    while todo:
        best = min(todo, key=lambda s: (-completes[s], len(todo[s]), s))
        order.append(best)
        for day in todo.pop(best):
            others = lacking[day]
            others.discard(best)
            if len(others) == 1:
                completes[next(iter(others))] += 1
        del completes[best]
    return order


async def closes(db: Database, symbols: Iterable[str], start: date,
                 end: date) -> dict[str, list[tuple[date, float]]]:
    """Closing prices per symbol in [start, end], oldest first."""
    return await dated_series(db, _BAR.c.symbol, _BAR.c.day, _BAR.c.close, list(symbols), start, end)
