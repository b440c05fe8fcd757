"""Reads and writes of tracked symbols and their levels (each one ``@operation``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from jobs.db import Prepared, operation, reads, shared_reads, utcnow
from jobs.models import JobTable
from jobs.prices.models import PriceBar
from jobs.status import UNFINISHED_STATUSES
from jobs.symbols.levels import DailyBar, Extraction
from jobs.symbols.tables import SymbolLevel, TrackedSymbol

SYMBOL = TrackedSymbol.__table__  # type: ignore[attr-defined]
LEVEL = SymbolLevel.__table__  # type: ignore[attr-defined]
_BAR = PriceBar.__table__  # type: ignore[attr-defined]
_JOB = JobTable.__table__  # type: ignore[attr-defined]
_STATE = [SYMBOL.c.symbol, SYMBOL.c.direction, SYMBOL.c.last_updated, SYMBOL.c.level_count,
          SYMBOL.c.version, SYMBOL.c.last_close]
CONFLICT = "Conflict: Symbol was modified by another request. Please retry."
REFRESH_KIND = "symbols.refresh"
REFRESH_ALL_KIND = "symbols.refresh_all"


class SymbolNotFound(LookupError):
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        super().__init__("Symbol not found")


class VersionConflict(RuntimeError):
    def __init__(self) -> None:
        super().__init__(CONFLICT)


def _state(row: Any) -> dict[str, Any]:
    return {"symbol": row[0], "direction": row[1], "last_updated": row[2], "level_count": row[3],
            "version": row[4], "last_close": row[5]}


def _level(row: Any) -> dict[str, Any]:
    m = row._mapping
    return {"id": m["id"], "kind": m["kind"], "price": m["price"], "strength": m["strength"],
            "first_touch": m["first_touch"].isoformat(), "last_touch": m["last_touch"].isoformat(),
            "created_at": m["created_at"].isoformat()}


_LIST = Prepared(sa.select(*_STATE).order_by(SYMBOL.c.symbol))


@reads
def list_symbols(conn: sa.Connection) -> list[dict[str, Any]]:
    return [_state(r) for r in _LIST.rows(conn)]


_FINGERPRINT = Prepared(sa.select(sa.func.count(), sa.func.sum(SYMBOL.c.version),
                                  sa.func.max(SYMBOL.c.added_at)))


@shared_reads
def fingerprint(conn: sa.Connection) -> tuple[Any, ...]:
    """Changes whenever a symbol is added, removed or written (every write bumps its version)."""
    return tuple(_FINGERPRINT.rows(conn)[0])


@reads
def symbol_names(conn: sa.Connection) -> list[str]:
    return [r[0] for r in conn.execute(sa.select(SYMBOL.c.symbol).order_by(SYMBOL.c.symbol))]


@reads
def get_symbol(conn: sa.Connection, symbol: str) -> dict[str, Any] | None:
    """The symbol's state and levels (highest price first), read in one transaction."""
    row = conn.execute(sa.select(*_STATE).where(SYMBOL.c.symbol == symbol)).first()
    if row is None:
        return None
    state = _state(row)
    state["levels"] = [_level(r) for r in conn.execute(
        sa.select(LEVEL).where(LEVEL.c.symbol == symbol).order_by(LEVEL.c.price.desc(), LEVEL.c.id))]
    return state


@reads
def levels_of(conn: sa.Connection, symbols: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in symbols}
    if symbols:
        stmt = (sa.select(LEVEL).where(LEVEL.c.symbol.in_(symbols))
                .order_by(LEVEL.c.symbol, LEVEL.c.price.desc(), LEVEL.c.id))
        for r in conn.execute(stmt):
            out[r.symbol].append(_level(r))
    return out


@operation
def add_symbol(conn: sa.Connection, symbol: str) -> bool:
    """Start tracking; False when it is tracked already."""
    if conn.execute(sa.select(SYMBOL.c.symbol).where(SYMBOL.c.symbol == symbol)).first():
        return False
    conn.execute(sa.insert(SYMBOL).values(symbol=symbol, direction="neutral", level_count=0,
                                          version=1, added_at=utcnow()))
    return True


@operation
def remove_symbol(conn: sa.Connection, symbol: str) -> bool:
    conn.execute(sa.delete(LEVEL).where(LEVEL.c.symbol == symbol))
    return bool(conn.execute(sa.delete(SYMBOL).where(SYMBOL.c.symbol == symbol)).rowcount)


@reads
def version_of(conn: sa.Connection, symbol: str) -> int | None:
    return conn.execute(sa.select(SYMBOL.c.version).where(SYMBOL.c.symbol == symbol)).scalar()


@operation
def replace_levels(conn: sa.Connection, symbol: str, expected_version: int, found: Extraction,
                   now: datetime) -> int:
    """Delete the old levels, insert the new ones and update the state, in one transaction;
    the new version. The state row is locked first (PostgreSQL: SELECT ... FOR UPDATE, so a
    concurrent writer waits and then sees the new version); on SQLite, which has one writer at
    a time, the version column guards the write. A version other than the one read before
    the extraction raises VersionConflict and nothing changes."""
    current = conn.execute(sa.select(SYMBOL.c.version).where(SYMBOL.c.symbol == symbol)
                           .with_for_update()).scalar()
    if current is None:
        raise SymbolNotFound(symbol)
    if current != expected_version:
        raise VersionConflict()
    conn.execute(sa.delete(LEVEL).where(LEVEL.c.symbol == symbol))
    if found.levels:
        conn.execute(sa.insert(LEVEL), [
            {"symbol": symbol, "kind": lv.kind, "price": lv.price, "strength": lv.strength,
             "first_touch": lv.first_touch, "last_touch": lv.last_touch, "created_at": now}
            for lv in found.levels])
    changed = conn.execute(
        sa.update(SYMBOL).where(SYMBOL.c.symbol == symbol, SYMBOL.c.version == expected_version)
        .values(direction=found.direction, last_updated=now, level_count=len(found.levels),
                last_close=found.last_close, version=expected_version + 1)).rowcount
    if changed != 1:
        raise VersionConflict()
    return expected_version + 1


@operation
def update_level(conn: sa.Connection, symbol: str, level_id: int, version: int,
                 changes: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Edit a level of ``symbol`` read at ``version``; (the level, the symbol's new version).
    SymbolNotFound (symbol or level), VersionConflict when the version moved on."""
    exists = conn.execute(sa.select(LEVEL.c.id).where(LEVEL.c.id == level_id,
                                                      LEVEL.c.symbol == symbol)).first()
    if exists is None:
        raise SymbolNotFound(symbol)
    bumped = conn.execute(sa.update(SYMBOL).where(SYMBOL.c.symbol == symbol,
                                                  SYMBOL.c.version == version)
                          .values(version=version + 1)).rowcount
    if bumped != 1:
        raise VersionConflict()
    if changes:
        conn.execute(sa.update(LEVEL).where(LEVEL.c.id == level_id).values(**changes))
    row = conn.execute(sa.select(LEVEL).where(LEVEL.c.id == level_id)).one()
    return _level(row), version + 1


_REFRESHING = Prepared(sa.select(_JOB.c.kind, _JOB.c.dedupe_key).where(
    sa.or_(_JOB.c.kind == REFRESH_KIND, _JOB.c.kind == REFRESH_ALL_KIND),
    sa.or_(*(_JOB.c.status == s.value for s in UNFINISHED_STATUSES))))


@reads
def refreshing(conn: sa.Connection) -> tuple[set[str], bool]:
    """Symbols with a refresh pending or running, and whether a refresh of all is."""
    symbols, everything = set(), False
    for kind, key in _REFRESHING.rows(conn):
        if kind == REFRESH_ALL_KIND:
            everything = True
        elif key:
            symbols.add(key.split(":", 1)[1])
    return symbols, everything


@reads
def board(conn: sa.Connection) -> tuple[list[dict[str, Any]], set[str], bool]:
    """What the /symbols page shows, in one transaction: every state, who is refreshing."""
    return list_symbols.sync(conn), *refreshing.sync(conn)  # type: ignore[attr-defined,return-value]


@reads
def daily_bars(conn: sa.Connection, symbol: str, start: date, end: date) -> list[DailyBar]:
    stmt = (sa.select(_BAR.c.day, _BAR.c.high, _BAR.c.low, _BAR.c.close)
            .where(_BAR.c.symbol == symbol, _BAR.c.day >= start, _BAR.c.day <= end)
            .order_by(_BAR.c.day))
    return [DailyBar(d, float(h), float(lo), float(c)) for d, h, lo, c in conn.execute(stmt)]
