"""Level extraction on hand-built bars whose levels are known."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from jobs.prices.calendar import trading_days
from jobs.prices.providers import synthetic_bar
from jobs.symbols.levels import DailyBar, ExtractionError, extract

START = date(2025, 1, 2)


def bars_of(closes: list[float], spread: float = 0.5) -> list[DailyBar]:
    return [DailyBar(START + timedelta(days=i), c + spread, c - spread, c) for i, c in enumerate(closes)]


def zigzag(low: float, high: float, legs: int, leg: int = 6, end: float | None = None) -> list[float]:
    """Up from ``low`` to ``high`` and back ``legs`` times, ``leg`` bars a leg."""
    out: list[float] = []
    for k in range(legs):
        a, b = (low, high) if k % 2 == 0 else (high, low)
        out += [a + (b - a) * i / leg for i in range(leg)]
    out.append(end if end is not None else out[-1])
    return out


def test_a_range_gives_its_floor_and_ceiling_with_their_touches() -> None:
    closes = zigzag(100, 110, legs=10, end=105)  # 5 tops at 110, 4 bottoms at 100 (first is the start)
    found = extract("RANGE", bars_of(closes))
    by_kind = {lv.kind: lv for lv in found.levels}
    assert set(by_kind) == {"support", "resistance"}
    assert by_kind["resistance"].price == pytest.approx(110.5)  # the highs
    assert by_kind["support"].price == pytest.approx(99.5)  # the lows
    assert by_kind["resistance"].strength == 5
    assert by_kind["support"].strength == 4
    assert by_kind["resistance"].first_touch == START + timedelta(days=6)
    assert by_kind["resistance"].last_touch == START + timedelta(days=54)


def test_near_touches_cluster_within_the_volatility_tolerance() -> None:
    # tops at 110, 110.2, 109.9 (within a daily range of each other): one level of 3 touches;
    # a lone top at 120 is a level of its own, ranked after
    closes = (zigzag(100, 110, 2, end=100)[:-1] + zigzag(100, 110.2, 2)[:-1]
              + zigzag(100, 109.9, 2)[:-1] + zigzag(100, 120, 2, end=104))
    found = extract("NEAR", bars_of(closes), max_levels=8)
    resistances = [lv for lv in found.levels if lv.kind == "resistance"]
    strongest = max(resistances, key=lambda lv: lv.strength)
    assert strongest.strength == 3
    assert strongest.price == pytest.approx((110.5 + 110.7 + 110.4) / 3, abs=1e-3)
    assert any(lv.price == pytest.approx(120.5) and lv.strength == 1 for lv in resistances)
    # the median true range: a leg moves 10/6 a day, plus half the bar's spread
    assert found.tolerance == pytest.approx(10 / 6 + 0.5)


def test_levels_are_ranked_by_touches_and_capped() -> None:
    closes = zigzag(100, 110, legs=10, end=105)
    assert [lv.strength for lv in extract("R", bars_of(closes), max_levels=1).levels] == [5]


def test_both_sides_are_kept_when_the_strongest_levels_are_all_on_one() -> None:
    # an old range 100-110 touched many times, then a climb to a new range 150-160 touched
    # fewer times, the price in the middle of it: the strongest levels are all support
    old = zigzag(100, 110, legs=16)
    climb = [110 + i for i in range(1, 40)]
    new = zigzag(149, 160, legs=5, end=155)
    found = extract("SIDES", bars_of(old + climb + new), max_levels=2)
    assert [lv.kind for lv in found.levels] == ["resistance", "support"]
    assert found.levels[0].price == pytest.approx(160.5)


def test_direction_from_the_moving_averages() -> None:
    up = [100 + i * 0.5 + (2 if i % 7 == 3 else 0) for i in range(260)]
    down = [300 - i * 0.5 - (2 if i % 7 == 3 else 0) for i in range(260)]
    assert extract("UP", bars_of(up)).direction == "bullish"
    assert extract("DOWN", bars_of(down)).direction == "bearish"
    assert extract("FLAT", bars_of(zigzag(100, 110, legs=40, end=105))).direction == "neutral"


def test_the_same_bars_give_the_same_levels() -> None:
    days = trading_days(date(2024, 11, 1), date(2026, 10, 30))
    bars = [DailyBar(b.day, b.high, b.low, b.close) for b in (synthetic_bar("SPX", d) for d in days)]
    first, again = extract("SPX", bars), extract("SPX", list(bars))
    assert first == again
    assert 1 <= len(first.levels) <= 8
    assert all(lv.strength >= 1 for lv in first.levels)
    assert all((lv.kind == "support") == (lv.price < first.last_close) for lv in first.levels)


def test_bars_that_cannot_yield_levels() -> None:
    with pytest.raises(ExtractionError, match="FEW: 10 daily bars stored, at least 30 are needed"):
        extract("FEW", bars_of([100.0] * 10))
    with pytest.raises(ExtractionError, match="FLAT: no swing highs or lows in 40 daily bars"):
        extract("FLAT", bars_of([100.0] * 40))
