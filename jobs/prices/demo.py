"""The price domain's demo data: two years of synthetic daily bars for the well-known tickers,
and three finished downloads (completed, partial with warnings, failed)."""

from __future__ import annotations

from datetime import timedelta

from jobs.db import Database, today_utc
from jobs.demo import finished_job, insert_finished
from jobs.prices import store as prices_store
from jobs.prices.calendar import trading_days
from jobs.prices.providers import synthetic_bar
from jobs.prices.universe import WELL_KNOWN_TICKERS
from jobs.status import Status

KIND = "prices.download"


async def seed(db: Database) -> None:
    tickers = WELL_KNOWN_TICKERS
    end = today_utc() - timedelta(days=1)
    start = end - timedelta(days=730)
    days = trading_days(start, end)
    bars = [synthetic_bar(symbol, day) for symbol in tickers for day in days]
    await prices_store.save_bars(db, bars, "synthetic")
    n = len(tickers)
    await insert_finished(db, [
        finished_job(KIND, {"symbols": list(tickers), "start_date": start.isoformat(),
                            "end_date": end.isoformat(), "provider": "synthetic"},
                     Status.COMPLETED, 90, 12.4, result={"bars_saved": len(bars)},
                     lines=(f"Missing data for {n} of {n} symbols", f"Downloaded {n}/{n} symbols")),
        finished_job(KIND, {"symbols": ["AAPL", "MSFT", "NFLX", "ORCL"],
                            "start_date": (end - timedelta(days=60)).isoformat(),
                            "end_date": end.isoformat(), "provider": "alphavantage"},
                     Status.PARTIAL, 45, 4.2,
                     warnings=["Rate limit reached - downloaded 2/4 symbols",
                               "Incomplete: NFLX (41 of 41 days missing), ORCL (41 of 41 days missing)"],
                     lines=("alphavantage: Our standard API rate limit is 25 requests per day.",)),
        finished_job(KIND, {"symbols": ["ZZZZ"], "start_date": start.isoformat(),
                            "end_date": end.isoformat(), "provider": "alphavantage"},
                     Status.FAILED, 30, 1.1,
                     error="No price data downloaded. ZZZZ: Alpha Vantage: Invalid API call."),
    ])
