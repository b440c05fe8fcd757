"""Exchange calendars: a market's trading days are its weekdays that are not its holidays (from
the holidays library's financial calendars: "NYSE", "XSHG", ...). Each domain names its market;
the holidays are computed once per (market, year)."""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays


@lru_cache(maxsize=256)
def holidays_of(market: str, year: int) -> frozenset[date]:
    return frozenset(holidays.financial_holidays(market, years=year).keys())


def is_trading_day(market: str, day: date) -> bool:
    return day.weekday() < 5 and day not in holidays_of(market, day.year)


def trading_days(market: str, start: date, end: date) -> list[date]:
    """Every trading day of ``market`` from start to end, both included."""
    days = []
    day = start
    while day <= end:
        if is_trading_day(market, day):
            days.append(day)
        day += timedelta(days=1)
    return days
