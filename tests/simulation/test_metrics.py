"""Metrics on tiny equity curves worked out by hand."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest

from jobs.simulation.metrics import (
    Metrics,
    daily_returns,
    max_drawdown,
    sharpe_ratio,
    summarize,
    total_return,
)

D0 = date(2025, 1, 6)


def curve(*values: float) -> list[tuple[date, float]]:
    return [(D0 + timedelta(days=i), v) for i, v in enumerate(values)]


def test_metrics_of_a_small_curve() -> None:
    c = curve(100, 110, 99, 121)
    assert total_return(c) == pytest.approx(0.21)
    assert max_drawdown(c) == pytest.approx(0.1)  # 110 -> 99
    assert daily_returns(c) == pytest.approx([0.1, -0.1, 22 / 99])
    # returns 0.1, -0.1, 2/9: mean 2/27; deviations 0.7/27, -4.7/27, 4/27, so the sample
    # variance is (0.49 + 22.09 + 16) / 729 / 2 = 19.29 / 729 and the std sqrt(19.29) / 27:
    # sharpe = (2/27) / (sqrt(19.29)/27) * sqrt(252) = 2 * sqrt(252 / 19.29) = 7.2288...
    assert sharpe_ratio(c) == pytest.approx(2 * math.sqrt(252 / 19.29))
    assert sharpe_ratio(c) == pytest.approx(7.2288, abs=1e-4)


def test_drawdown_is_the_deepest_fall_from_any_peak() -> None:
    assert max_drawdown(curve(100, 120, 90, 130, 104, 140)) == pytest.approx(0.25)  # 120 -> 90
    assert max_drawdown(curve(100, 101, 102)) == 0.0
    assert max_drawdown(curve(100, 50, 0)) == 1.0
    assert max_drawdown([]) == 0.0


def test_initial_value_counts_as_the_start() -> None:
    c = curve(99, 110)
    assert total_return(c, initial_value=100) == pytest.approx(0.1)
    assert max_drawdown(c, initial_value=100) == pytest.approx(0.01)
    assert daily_returns(c, initial_value=100) == pytest.approx([-0.01, 110 / 99 - 1])


def test_sharpe_needs_two_varying_returns() -> None:
    assert sharpe_ratio(curve(100, 110)) is None  # one return
    assert sharpe_ratio(curve(100, 200, 400, 800)) is None  # +100% every day: no variation
    assert sharpe_ratio([]) is None
    # from the initial value: returns 0 and +10%, mean 0.05, std 0.05 * sqrt(2)
    assert sharpe_ratio(curve(100, 110), initial_value=100) == pytest.approx(math.sqrt(252 / 2))


def test_degenerate_curves() -> None:
    assert total_return([]) is None
    assert total_return(curve(100)) == 0.0
    assert total_return(curve(0, 10)) is None
    assert daily_returns(curve(0, 10, 20)) == [1.0]


def test_summarize() -> None:
    m = summarize(curve(99, 110, 99, 121), trades=7, initial_value=100)
    assert m == Metrics(start_value=100.0, end_value=121.0, total_return=pytest.approx(0.21),
                        max_drawdown=pytest.approx(0.1), sharpe=m.sharpe, trades=7, days=4)
    assert m.sharpe is not None and m.sharpe > 0
    assert m.to_dict()["trades"] == 7
    empty = summarize([], trades=0)
    assert empty.to_dict() == {"start_value": None, "end_value": None, "total_return": None,
                               "max_drawdown": 0.0, "sharpe": None, "trades": 0, "days": 0}
