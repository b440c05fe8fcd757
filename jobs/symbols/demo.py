"""The symbols domain's demo: a few tracked symbols, most with levels, one stale, one never updated."""

from __future__ import annotations

from datetime import timedelta

from jobs.db import Database, utcnow
from jobs.prices import store as prices_store
from jobs.prices.calendar import trading_days
from jobs.prices.providers import synthetic_bar
from jobs.symbols import store
from jobs.symbols.levels import extract

# symbol -> hours since its last refresh (None: tracked, never refreshed)
DEMO = {"SPX": 3, "QQQ": 5, "AAPL": 20, "NVDA": 72, "MSFT": 26, "TSLA": None}


async def seed(db: Database) -> None:
    from jobs.symbols.refresh import window

    start, end = window()
    days = trading_days(start, end)
    await prices_store.save_bars(db, [synthetic_bar(s, d) for s in ("SPX", "QQQ") for d in days],
                                 "synthetic")
    now = utcnow()
    for symbol, hours in DEMO.items():
        await store.add_symbol(db, symbol)
        if hours is None:
            continue
        bars = await store.daily_bars(db, symbol, start, end)
        if len(bars) < 30:
            continue
        await store.replace_levels(db, symbol, 1, extract(symbol, bars), now - timedelta(hours=hours))
