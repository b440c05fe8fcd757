"""The per-symbol run-time lock (redis-py's Lock on a real Redis): extended while a refresh
runs past its time to live, released at the end and on cancel, and reported lost when it could
not be extended."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from jobs.engine import redis_client
from jobs.redis_embedded import EmbeddedRedis
from jobs.symbols import refresh
from jobs.symbols.refresh import LOCK_PREFIX, symbol_lock
from jobs.symbols.settings import SymbolsSettings

TTL = 1.0


@pytest.fixture
def redis_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(refresh, "symbols_settings", lambda: SymbolsSettings(
        symbol_lock_seconds=TTL, symbol_lock_wait_seconds=0))
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server.url


class Ctx:
    """What the lock needs of a job's context: its engine's Redis and cancellation."""

    def __init__(self, redis: Any) -> None:
        self.engine = SimpleNamespace(redis=redis)
        self.cancelled = asyncio.Event()

    def raise_if_cancelled(self) -> None:
        from jobs.context import JobCancelled

        if self.cancelled.is_set():
            raise JobCancelled()

    async def wait_cancelled(self) -> None:
        await self.cancelled.wait()


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Any]:
    redis = redis_client(url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_the_lock_outlives_its_ttl_while_held_and_is_gone_after(redis_url: str) -> None:
    async with connected(redis_url) as redis:
        async with symbol_lock(Ctx(redis), "SPX") as lost:
            for _ in range(6):  # 3 × the time to live
                await asyncio.sleep(TTL / 2)
                ttl_ms = await redis.pttl(LOCK_PREFIX + "SPX")
                assert ttl_ms > 0, "the lock expired while its refresh still ran"
            assert not lost.is_set()
        assert not await redis.exists(LOCK_PREFIX + "SPX")


async def test_a_cancelled_refresh_releases_its_lock_at_once(redis_url: str) -> None:
    held = asyncio.Event()
    async with connected(redis_url) as redis:
        async def refresh_that_runs_long() -> None:
            async with symbol_lock(Ctx(redis), "QQQ"):
                held.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(refresh_that_runs_long())
        await asyncio.wait_for(held.wait(), 5)
        assert await redis.exists(LOCK_PREFIX + "QQQ")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # released, not left for its time to live: the next refresh takes it at once
        assert not await redis.exists(LOCK_PREFIX + "QQQ")
        async with symbol_lock(Ctx(redis), "QQQ"):
            pass


async def test_a_lock_taken_away_is_reported_lost(redis_url: str) -> None:
    async with connected(redis_url) as redis:
        async with symbol_lock(Ctx(redis), "AAPL") as lost:
            await redis.delete(LOCK_PREFIX + "AAPL")  # it expired while the worker stalled
            await asyncio.wait_for(lost.wait(), TTL)  # the next extension finds it gone
        held_by_other = redis.lock(LOCK_PREFIX + "AAPL", timeout=10)
        assert await held_by_other.acquire(blocking=False)
