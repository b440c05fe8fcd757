"""Results of a simulated model from its equity curve: pure functions, no I/O.

An equity curve is ``[(day, portfolio value), ...]``, oldest first, one point per model-day.
Pass ``initial_value`` (the model's starting cash) to count the first day from that value, so
that the first day's trades and their costs are part of the result.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

__all__ = ["TRADING_DAYS_PER_YEAR", "Metrics", "daily_returns", "max_drawdown", "sharpe_ratio",
           "summarize", "total_return"]

TRADING_DAYS_PER_YEAR = 252

EquityCurve = Sequence[tuple[date, float]]


def _values(curve: EquityCurve, initial_value: float | None) -> list[float]:
    values = [float(v) for _, v in curve]
    if initial_value is not None and values:
        values.insert(0, float(initial_value))
    return values


def total_return(curve: EquityCurve, initial_value: float | None = None) -> float | None:
    """``last / first - 1``; None for an empty curve or a non-positive first value."""
    values = _values(curve, initial_value)
    if not values or values[0] <= 0:
        return None
    return values[-1] / values[0] - 1.0


def max_drawdown(curve: EquityCurve, initial_value: float | None = None) -> float:
    """The largest fall from a running peak, as a positive fraction of that peak (0: never fell)."""
    peak, worst = -math.inf, 0.0
    for value in _values(curve, initial_value):
        peak = max(peak, value)
        if peak > 0:
            worst = max(worst, (peak - value) / peak)
    return worst


def daily_returns(curve: EquityCurve, initial_value: float | None = None) -> list[float]:
    """Returns from one point to the next (a step from a non-positive value is left out)."""
    values = _values(curve, initial_value)
    return [b / a - 1.0 for a, b in zip(values, values[1:], strict=False) if a > 0]


def sharpe_ratio(curve: EquityCurve, initial_value: float | None = None,
                 periods_per_year: int = TRADING_DAYS_PER_YEAR) -> float | None:
    """Annualised Sharpe ratio of the daily returns, risk-free rate 0:
    ``mean / sample standard deviation * sqrt(periods_per_year)``.
    None with fewer than two returns or when they do not vary."""
    returns = daily_returns(curve, initial_value)
    if len(returns) < 2:
        return None
    std = statistics.stdev(returns)
    if std <= 1e-15:
        return None
    return statistics.fmean(returns) / std * math.sqrt(periods_per_year)


@dataclass(frozen=True)
class Metrics:
    start_value: float | None
    end_value: float | None
    total_return: float | None
    max_drawdown: float
    sharpe: float | None
    trades: int
    days: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(curve: EquityCurve, trades: int, initial_value: float | None = None) -> Metrics:
    """Every result of one model: value at start and end, total return, max drawdown, Sharpe
    ratio, number of trades (given: the curve does not know them) and of model-days."""
    values = _values(curve, initial_value)
    return Metrics(
        start_value=values[0] if values else None,
        end_value=values[-1] if values else None,
        total_return=total_return(curve, initial_value),
        max_drawdown=max_drawdown(curve, initial_value),
        sharpe=sharpe_ratio(curve, initial_value),
        trades=trades,
        days=len(curve),
    )
