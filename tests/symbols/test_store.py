"""The write of a refresh: delete-old, insert-new, state update in one transaction, guarded by
the version (and on PostgreSQL by SELECT ... FOR UPDATE on the state row)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa

from jobs.db import Database, utcnow
from jobs.prices.calendar import trading_days
from jobs.prices.providers import synthetic_bar
from jobs.symbols import store
from jobs.symbols.levels import DailyBar, Extraction, extract
from jobs.symbols.refresh import window


async def _tracked(db: Database, symbol: str = "SPX") -> Extraction:
    start, end = window()
    bars = [synthetic_bar(symbol, d) for d in trading_days(start, end)]
    await store.add_symbol(db, symbol)
    return extract(symbol, [DailyBar(b.day, b.high, b.low, b.close) for b in bars])


def _rows(conn: sa.Connection, symbol: str) -> list[tuple[object, ...]]:
    return [tuple(r) for r in conn.execute(sa.select(store.LEVEL).where(store.LEVEL.c.symbol == symbol)
                                           .order_by(store.LEVEL.c.id))]


async def test_replace_levels_writes_and_bumps_the_version(db: Database) -> None:
    found = await _tracked(db)
    assert await store.replace_levels(db, "SPX", 1, found, utcnow()) == 2
    state = await store.get_symbol(db, "SPX")
    assert state is not None
    assert state["version"] == 2 and state["level_count"] == len(found.levels) == len(state["levels"])
    assert state["direction"] == found.direction
    assert await store.replace_levels(db, "SPX", 2, found, utcnow()) == 3  # replaced, not added
    assert len(await db.run(_rows, "SPX")) == len(found.levels)


async def test_a_stale_version_changes_nothing(db: Database) -> None:
    found = await _tracked(db)
    await store.replace_levels(db, "SPX", 1, found, utcnow() - timedelta(hours=5))
    before = await db.run(_rows, "SPX")
    state_before = await store.get_symbol(db, "SPX")
    with pytest.raises(store.VersionConflict, match="^Conflict: Symbol was modified by another "
                       r"request\. Please retry\.$"):
        await store.replace_levels(db, "SPX", 1, found, utcnow())
    assert await db.run(_rows, "SPX") == before
    assert await store.get_symbol(db, "SPX") == state_before


async def test_editing_a_level_needs_the_current_version(db: Database) -> None:
    found = await _tracked(db)
    await store.replace_levels(db, "SPX", 1, found, utcnow())
    level = (await store.get_symbol(db, "SPX"))["levels"][0]  # type: ignore[index]
    edited, version = await store.update_level(db, "SPX", level["id"], 2, {"strength": 99})
    assert edited["strength"] == 99 and version == 3
    with pytest.raises(store.VersionConflict):
        await store.update_level(db, "SPX", level["id"], 2, {"strength": 1})
    assert (await store.get_symbol(db, "SPX"))["levels"][0]["strength"] == 99  # type: ignore[index]


async def test_removing_a_symbol_removes_its_levels(db: Database) -> None:
    found = await _tracked(db)
    await store.replace_levels(db, "SPX", 1, found, utcnow())
    assert await store.remove_symbol(db, "SPX") is True
    assert await db.run(_rows, "SPX") == []
    assert await store.remove_symbol(db, "SPX") is False


async def test_a_writer_holding_the_state_row_makes_the_refresh_wait_then_refuse(
        db: Database, db_url: str, database: str) -> None:
    """Another transaction holds the state row and moves the version on. PostgreSQL: the refresh
    waits at its SELECT ... FOR UPDATE (seen in pg_stat_activity); SQLite: at the write lock. Both
    then refuse on the version, the other writer's change kept and no level duplicated."""
    found = await _tracked(db)
    await store.replace_levels(db, "SPX", 1, found, utcnow())
    before = await db.run(_rows, "SPX")
    other = Database(db_url)
    holder = sa.select(store.SYMBOL.c.version).where(store.SYMBOL.c.symbol == "SPX").with_for_update()
    release = asyncio.Event()

    def hold(conn: sa.Connection) -> None:
        conn.execute(holder)
        conn.execute(sa.update(store.SYMBOL).where(store.SYMBOL.c.symbol == "SPX").values(version=3))

    async def other_writer() -> None:
        if other._async is not None:
            async with other._async.begin() as conn:
                await conn.run_sync(hold)
                await release.wait()
        else:  # SQLite: a write transaction of its own, held open from a thread
            def blocking() -> None:
                with other.engine.begin() as conn:  # the store's writer: BEGIN IMMEDIATE
                    hold(conn)
                    asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
            loop = asyncio.get_running_loop()
            await asyncio.to_thread(blocking)

    holding = asyncio.create_task(other_writer())
    await asyncio.sleep(0.3)
    refresh = asyncio.create_task(store.replace_levels(db, "SPX", 2, found, utcnow()))
    await asyncio.sleep(0.5)
    assert not refresh.done(), "the refresh did not wait for the transaction holding the row"
    if database == "postgres":
        waiting = await other.run(lambda c: [r[0] for r in c.execute(sa.text(
            "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))])
        assert any("FOR UPDATE" in q and "tracked_symbol" in q for q in waiting), waiting
    release.set()
    await holding
    with pytest.raises(store.VersionConflict):
        await refresh
    assert await db.run(_rows, "SPX") == before
    assert (await store.get_symbol(db, "SPX"))["version"] == 3  # type: ignore[index]
    await other.dispose()
