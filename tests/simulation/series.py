"""Hand-made close series for the strategy and catalog tests."""

from __future__ import annotations

from datetime import date

from jobs.prices.calendar import trading_days
from jobs.simulation.strategies import Point

DAYS = trading_days(date(2025, 3, 3), date(2025, 5, 30))


def series(*closes: float, start: int = 0) -> list[Point]:
    return [(DAYS[start + i], float(c)) for i, c in enumerate(closes)]
