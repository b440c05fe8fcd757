"""Demo data for a first `marketdesk serve`: 20 well-known tickers with two years of synthetic
daily bars, and a few finished jobs (one with warnings) so every panel has something to show."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from jobs import store
from jobs.db import Database, utcnow
from jobs.models import Job
from jobs.prices import store as prices_store
from jobs.prices.calendar import trading_days
from jobs.prices.download import today_utc
from jobs.prices.providers import synthetic_bar
from jobs.queue import new_job_id
from jobs.settings import Settings
from jobs.status import Status

DEMO_TICKERS = ("AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA", "TSLA", "BRK.B", "JPM", "V",
                "JNJ", "WMT", "PG", "XOM", "UNH", "HD", "MA", "KO", "PEP", "DIS")
MARKER = ".demo-seeded"


async def seed_if_first_run(settings: Settings) -> bool:
    marker = settings.data_dir / MARKER
    if marker.exists():
        return False
    db = Database(settings.resolved_database_url)
    try:
        _, total = await store.list_jobs(db, limit=1)
        if total == 0 and not await prices_store.coverage(db):
            await seed(db)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(utcnow().isoformat())
        return total == 0
    finally:
        await db.dispose()


async def seed(db: Database) -> None:
    end = today_utc() - timedelta(days=1)
    start = end - timedelta(days=730)
    days = trading_days(start, end)
    bars = [synthetic_bar(symbol, day) for symbol in DEMO_TICKERS for day in days]
    await prices_store.save_bars(db, bars, "synthetic")
    now = utcnow()

    def finished(kind: str, params: dict, status: Status, minutes_ago: int, seconds: float,
                 warnings: list[str] | None = None, error: str | None = None,
                 result: dict | None = None, lines: tuple[str, ...] = ()) -> tuple[Job, list[str]]:
        started = now - timedelta(minutes=minutes_ago)
        job = Job(id=new_job_id(), kind=kind, params=params, status=status.value, attempts=1,
                  progress_done=1, progress_total=1, phase="Done", warnings=warnings or [],
                  error=error, result=result, created_at=started - timedelta(seconds=1),
                  updated_at=started + timedelta(seconds=seconds), started_at=started,
                  finished_at=started + timedelta(seconds=seconds))
        return job, list(lines)

    entries = [
        finished("prices.download", {"symbols": list(DEMO_TICKERS), "start_date": start.isoformat(),
                                     "end_date": end.isoformat(), "provider": "synthetic"},
                 Status.COMPLETED, 90, 12.4, result={"bars_saved": len(bars)},
                 lines=(f"Missing data for {len(DEMO_TICKERS)} of {len(DEMO_TICKERS)} symbols",
                        f"Downloaded {len(DEMO_TICKERS)}/{len(DEMO_TICKERS)} symbols")),
        finished("prices.download", {"symbols": ["AAPL", "MSFT", "NFLX", "ORCL"],
                                     "start_date": (end - timedelta(days=60)).isoformat(),
                                     "end_date": end.isoformat(), "provider": "alphavantage"},
                 Status.PARTIAL, 45, 4.2,
                 warnings=["Rate limit reached - downloaded 2/4 symbols",
                           "Incomplete: NFLX (41 of 41 days missing), ORCL (41 of 41 days missing)"],
                 lines=("alphavantage: Our standard API rate limit is 25 requests per day.",)),
        finished("prices.download", {"symbols": ["ZZZZ"], "start_date": start.isoformat(),
                                     "end_date": end.isoformat(), "provider": "alphavantage"},
                 Status.FAILED, 30, 1.1,
                 error="No price data downloaded. ZZZZ: Alpha Vantage: Invalid API call."),
        finished("diagnostics.sleep", {"steps": 5, "step_seconds": 0.5}, Status.COMPLETED, 10, 2.6,
                 result={"steps": 5}),
    ]
    await db.run(_insert_finished, entries, now)


def _insert_finished(conn: sa.Connection, entries: list[tuple[Job, list[str]]], now: datetime) -> None:
    conn.execute(sa.insert(store.JOB), [job.values() for job, _ in entries])
    lines = [{"job_id": job.id, "message": line, "level": "info", "at": job.finished_at or now}
             for job, job_lines in entries for line in job_lines]
    if lines:
        conn.execute(sa.insert(store.LOG), lines)
