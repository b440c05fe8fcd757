"""The NYSE trading calendar (jobs.calendars): weekdays that are not NYSE holidays."""

from __future__ import annotations

from bisect import bisect_left
from datetime import date, timedelta
from functools import lru_cache

from jobs import calendars

MARKET = "NYSE"


def is_trading_day(day: date) -> bool:
    return calendars.is_trading_day(MARKET, day)


def trading_days(start: date, end: date) -> list[date]:
    """Every NYSE trading day from start to end, both included."""
    return calendars.trading_days(MARKET, start, end)


@lru_cache(maxsize=128)
def _year(year: int) -> tuple[date, ...]:
    return tuple(trading_days(date(year, 1, 1), date(year, 12, 31)))


def trading_day_count(start: date, end: date) -> int:
    """How many NYSE trading days from start to end, both included: ``len(trading_days(...))``
    in microseconds (per-year lists, cached), for coverage over thousands of symbols."""
    if end < start:
        return 0
    if start.year == end.year:
        days = _year(start.year)
        return bisect_left(days, end + timedelta(days=1)) - bisect_left(days, start)
    n = len(_year(start.year)) - bisect_left(_year(start.year), start)
    n += sum(len(_year(y)) for y in range(start.year + 1, end.year))
    return n + bisect_left(_year(end.year), end + timedelta(days=1))
