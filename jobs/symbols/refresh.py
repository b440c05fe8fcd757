"""The ``symbols.refresh`` and ``symbols.refresh_all`` job kinds, and the scheduled staleness check.

Safety, in three layers:

- submit time: one unfinished job per key (``symbols.refresh:<SYMBOL>``; the database refuses
  a second one, whatever the web process), so simultaneous requests make one job;
- run time: a per-symbol Redis lock (redis-py's ``Lock``, with a time to live extended while
  the refresh runs, released at the end, on failure and on cancel), so a requeued job and a
  lost worker still alive never write the same symbol's levels at the same time;
- write time: delete-old, insert-new and the state update in one transaction, guarded by the
  state row's version (and on PostgreSQL its row lock): the old levels stay exactly as they
  were when anything fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from redis.exceptions import LockError, RedisError

from jobs.context import JobCancelled, JobContext, JobFailed, cancellable
from jobs.db import today_utc, utcnow
from jobs.items import Items
from jobs.prices import store as prices_store
from jobs.prices.download import FetchReport, fetch_missing
from jobs.prices.params import tickers
from jobs.prices.providers import make_provider
from jobs.prices.settings import prices_settings
from jobs.registry import JobKind, Outcome
from jobs.status import Status
from jobs.symbols import store
from jobs.symbols.levels import ExtractionError, extract
from jobs.symbols.settings import symbols_settings
from jobs.symbols.staleness import calculate_staleness, threshold_hours

log = logging.getLogger("marketdesk.symbols")

SYMBOLS_TOPIC = "symbols"
CARD_EVENT = "symbol"  # one card changed: {"symbol": ...}
BOARD_EVENT = "symbols"  # the board changed (added, removed, many at once)
LOCK_PREFIX = "marketdesk:symbols:lock:"
STALE_SET = "marketdesk:symbols:stale"  # the stale cards last announced (not the source of truth)


class RefreshParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str

    @field_validator("symbol", mode="before")
    @classmethod
    def _ticker(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError('must be one ticker (e.g. "SPX")')
        return tickers(value, 1, "refresh")[0]


class RefreshAllParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def window() -> tuple[date, date]:
    """The days levels are drawn from: the configured history up to the last closed session."""
    end = today_utc() - timedelta(days=1)
    return end - timedelta(days=symbols_settings().symbol_history_days), end


def card_event(symbol: str) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    return CARD_EVENT, (SYMBOLS_TOPIC,), {"symbol": symbol}


def board_event() -> tuple[str, tuple[str, ...], dict[str, Any]]:
    return BOARD_EVENT, (SYMBOLS_TOPIC,), {}


@contextlib.asynccontextmanager
async def symbol_lock(ctx: JobContext, symbol: str) -> AsyncIterator[asyncio.Event]:
    """Hold the symbol's lock for the block (waiting for another holder up to the configured
    time); the event yielded is set if the lock was lost (it could not be extended)."""
    settings = symbols_settings()
    ttl = settings.symbol_lock_seconds
    lock = ctx.engine.redis.lock(LOCK_PREFIX + symbol, timeout=ttl, sleep=0.05, blocking=True,
                                 blocking_timeout=settings.symbol_lock_wait_seconds,
                                 thread_local=False)
    if not await cancellable(ctx, lock.acquire()):
        raise JobFailed(f"{symbol}: another refresh held it for "
                        f"{settings.symbol_lock_wait_seconds:g}s; try again later")
    lost = asyncio.Event()

    async def keep() -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await lock.extend(ttl, replace_ttl=True)
            except (LockError, RedisError):
                lost.set()
                return

    keeper = asyncio.create_task(keep())
    try:
        yield lost
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        with contextlib.suppress(LockError, RedisError):
            await asyncio.shield(lock.release())


async def refresh_symbol(ctx: JobContext, symbol: str) -> tuple[int, datetime, str]:
    """Extract ``symbol``'s levels from its stored bars and replace the old ones, under its
    lock, in one transaction; (levels written, when, direction). Raises ExtractionError,
    VersionConflict, SymbolNotFound, JobFailed; the old levels stay when it raises."""
    db = ctx.engine.db
    start, end = window()
    settings = symbols_settings()
    async with symbol_lock(ctx, symbol) as lost:
        version = await store.version_of(db, symbol)
        if version is None:
            raise store.SymbolNotFound(symbol)
        bars = await store.daily_bars(db, symbol, start, end)
        found = await asyncio.to_thread(extract, symbol, bars, settings.symbol_max_levels)
        ctx.raise_if_cancelled()
        if lost.is_set():
            raise JobFailed(f"{symbol}: the refresh lost its lock; nothing was written")
        now = utcnow()
        await store.replace_levels(db, symbol, version, found, now)
    await ctx.engine.publish(card_event(symbol))
    return len(found.levels), now, found.direction


async def _download(ctx: JobContext, symbols: list[str]) -> FetchReport:
    start, end = window()
    settings = prices_settings()
    provider = make_provider(settings.default_provider, settings, ctx.engine.redis)
    try:
        return await fetch_missing(ctx, provider, symbols, start, end)
    finally:
        await provider.aclose()


async def _missing(engine: Any, symbols: list[str]) -> bool:
    start, end = window()
    missing = await prices_store.missing_days(engine.db, symbols, start, end)
    return any(missing.values())


async def _first_status_one(engine: Any, params: RefreshParams) -> Status:
    return Status.DOWNLOADING_DATA if await _missing(engine, [params.symbol]) else Status.RUNNING


async def _first_status_all(engine: Any, params: RefreshAllParams) -> Status:
    names = await store.symbol_names(engine.db)
    return Status.DOWNLOADING_DATA if names and await _missing(engine, names) else Status.RUNNING


async def refresh(ctx: JobContext, params: RefreshParams) -> Outcome:
    symbol = params.symbol
    if await store.version_of(ctx.engine.db, symbol) is None:
        raise JobFailed(f"{symbol} is not tracked")
    if ctx.status == Status.DOWNLOADING_DATA:
        report = await _download(ctx, [symbol])
        if symbol in report.failed:
            await ctx.warn(f"{symbol}: {report.failed[symbol]}")
        await ctx.set_status(Status.RUNNING, phase=f"Extracting levels of {symbol}")
    else:
        await ctx.progress(0, 1, f"Extracting levels of {symbol}")
    try:
        count, at, direction = await refresh_symbol(ctx, symbol)
    except (ExtractionError, store.VersionConflict, store.SymbolNotFound) as exc:
        raise JobFailed(str(exc)) from None
    await ctx.progress(1, 1, f"{count} levels, {direction}")
    await ctx.log(f"{symbol}: {count} levels extracted, {direction}")
    return Outcome(Status.COMPLETED, {"symbol": symbol, "levels_extracted": count,
                                      "last_updated": at.isoformat(), "direction": direction})


async def refresh_all(ctx: JobContext, params: RefreshAllParams) -> Outcome:
    symbols = await store.symbol_names(ctx.engine.db)
    items = Items()
    if ctx.status == Status.DOWNLOADING_DATA and symbols:
        report = await _download(ctx, symbols)
        for symbol, error in report.failed.items():
            await ctx.warn(f"{symbol}: {error}")
        await ctx.set_status(Status.RUNNING)
    total, levels = len(symbols), 0
    for index, symbol in enumerate(symbols):
        ctx.raise_if_cancelled()
        await ctx.progress(index, total, f"Refreshing {symbol} ({index + 1}/{total})",
                           min_interval=0.5)
        try:
            count, _, _ = await refresh_symbol(ctx, symbol)
        except JobCancelled:
            raise
        except (ExtractionError, store.VersionConflict, store.SymbolNotFound, JobFailed) as exc:
            await items.fail(ctx, symbol, str(exc))
        except Exception as exc:  # one symbol's surprise must not stop the others
            log.exception("refreshing %s failed", symbol)
            await items.fail(ctx, symbol, f"{type(exc).__name__}: {exc}")
        else:
            items.ok(symbol)
            levels += count
    await ctx.progress(total, total, f"Refreshed {len(items.succeeded)}/{total} symbols")
    if items.failed and items.status != Status.FAILED:
        await ctx.warn(f"{len(items.failed)} of {total} symbols failed: {', '.join(items.failed)}")
    await ctx.engine.publish(board_event())
    return items.outcome(levels_extracted=levels)


REFRESH = JobKind(
    name=store.REFRESH_KIND, title="Symbol refresh", params_model=RefreshParams, func=refresh,
    choose_first_status=_first_status_one, topics=(SYMBOLS_TOPIC,),
    describe=lambda p: str(p.get("symbol", "")), key=lambda p: str(p["symbol"]),
)
REFRESH_ALL = JobKind(
    name=store.REFRESH_ALL_KIND, title="Refresh all symbols", params_model=RefreshAllParams,
    func=refresh_all, choose_first_status=_first_status_all, topics=(SYMBOLS_TOPIC,),
    describe=lambda p: "every tracked symbol", key=lambda p: "all",
)


async def check_staleness(engine: Any) -> list[str]:
    """Announce the cards whose staleness changed since the last check (run by one worker every
    ``symbol_staleness_check_seconds``): open pages turn them stale without polling. The
    symbols changed."""
    rows = await store.list_symbols(engine.db)
    now, threshold = utcnow(), threshold_hours()
    names = {r["symbol"] for r in rows}
    stale = {r["symbol"] for r in rows
             if calculate_staleness(r["last_updated"], now, threshold)["is_stale"]}
    before = {m.decode() if isinstance(m, bytes) else m for m in await engine.redis.smembers(STALE_SET)}
    changed = sorted((stale ^ before) & names)
    async with engine.redis.pipeline(transaction=True) as pipe:
        pipe.delete(STALE_SET)
        if stale:
            pipe.sadd(STALE_SET, *stale)
        await pipe.execute()
    if len(changed) > 20:
        await engine.publish(board_event())
    elif changed:
        await engine.publish(*(card_event(s) for s in changed))
    return changed
