"""What the symbols tests share: the stack's database from the test process, level rows."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from jobs.db import Database
from jobs.symbols import store
from tests.stack import Stack

_BAR = sa.table("price_bar", sa.column("symbol"), sa.column("open"), sa.column("high"),
                sa.column("low"), sa.column("close"))


def database_url(stack: Any) -> str:
    return stack.env.get("MARKETDESK_DATABASE_URL") or f"sqlite:///{stack.data_dir / 'marketdesk.db'}"


def run_sql(stack: Stack, fn: Any, *args: Any) -> Any:
    """``fn(connection, *args)`` in one transaction on the stack's database."""
    db = Database(database_url(stack))
    try:
        return db.run_blocking(fn, *args)
    finally:
        db.dispose_blocking()


def level_rows(stack: Stack, symbol: str) -> list[tuple[Any, ...]]:
    def read(conn: sa.Connection) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in conn.execute(
            sa.select(store.LEVEL).where(store.LEVEL.c.symbol == symbol).order_by(store.LEVEL.c.id))]
    return run_sql(stack, read)  # type: ignore[no-any-return]


def state_row(stack: Stack, symbol: str) -> tuple[Any, ...] | None:
    def read(conn: sa.Connection) -> tuple[Any, ...] | None:
        row = conn.execute(sa.select(store.SYMBOL).where(store.SYMBOL.c.symbol == symbol)).first()
        return None if row is None else tuple(row)
    return run_sql(stack, read)  # type: ignore[no-any-return]


def flatten_bars(stack: Stack, symbol: str, price: float = 100.0) -> int:
    """Make the stored bars of ``symbol`` flat: real input from which no level can be drawn."""
    def write(conn: sa.Connection) -> int:
        return int(conn.execute(sa.update(_BAR).where(_BAR.c.symbol == symbol).values(
            open=price, high=price, low=price, close=price)).rowcount)
    return run_sql(stack, write)  # type: ignore[no-any-return]


def set_last_updated(stack: Stack, symbol: str, when: Any) -> None:
    def write(conn: sa.Connection) -> None:
        # as every write of ours does, it moves the version on
        conn.execute(sa.update(store.SYMBOL).where(store.SYMBOL.c.symbol == symbol)
                     .values(last_updated=when, version=store.SYMBOL.c.version + 1))
    run_sql(stack, write)
