"""Support and resistance levels from daily bars, and the trend's direction. Pure and
deterministic: the same bars give the same levels.

1. Swing points: a bar whose high is above the ``SWING`` bars before it and not below the
   ``SWING`` bars after it is a swing high (lows alike); the right side is not strict, so a
   flat top of two bars counts once, at its first bar.
2. Tolerance: the median true range of the bars (the symbol's own daily volatility), never
   below 0.05 % of the last close.
3. Clusters: swing prices in ascending order, each joining the cluster before it while within
   the tolerance of that cluster's mean; a cluster is a level at its mean price, its strength
   the number of touches, with its first and last touch.
4. Below the last close a level is support, above it resistance. Ranked by touches, then the
   latest touch, then nearness to the last close; the best ``max_levels`` kept, half of them
   from each side while each side has enough (so a price at its highs still shows its
   resistance, a price in a range both edges).
5. Direction: last close above its 50-day average and that above the 200-day one → bullish;
   both below → bearish; else neutral (with fewer bars, the averages of what there is).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

SWING = 3
MIN_BARS = 30


class ExtractionError(ValueError):
    """The bars cannot yield levels (too few, or no swing points)."""


@dataclass(frozen=True)
class DailyBar:
    day: date
    high: float
    low: float
    close: float


@dataclass(frozen=True)
class Level:
    kind: str
    price: float
    strength: int
    first_touch: date
    last_touch: date

    def to_api(self) -> dict[str, object]:
        return {"kind": self.kind, "price": self.price, "strength": self.strength,
                "first_touch": self.first_touch.isoformat(), "last_touch": self.last_touch.isoformat()}


@dataclass(frozen=True)
class Extraction:
    levels: list[Level]
    direction: str
    last_close: float
    tolerance: float
    sma50: float
    sma200: float


def swing_points(bars: Sequence[DailyBar], width: int = SWING) -> list[tuple[date, float]]:
    points = []
    for i in range(width, len(bars) - width):
        high, low = bars[i].high, bars[i].low
        before, after = bars[i - width:i], bars[i + 1:i + width + 1]
        if high > max(b.high for b in before) and high >= max(b.high for b in after):
            points.append((bars[i].day, high))
        if low < min(b.low for b in before) and low <= min(b.low for b in after):
            points.append((bars[i].day, low))
    return points


def tolerance_of(bars: Sequence[DailyBar]) -> float:
    ranges = [bars[0].high - bars[0].low]
    for prev, bar in zip(bars, bars[1:], strict=False):
        ranges.append(max(bar.high, prev.close) - min(bar.low, prev.close))
    return max(statistics.median(ranges), abs(bars[-1].close) * 0.0005)


def direction_of(closes: Sequence[float]) -> tuple[str, float, float]:
    last = closes[-1]
    sma50 = statistics.fmean(closes[-50:])
    sma200 = statistics.fmean(closes[-200:])
    if last > sma50 > sma200:
        return "bullish", sma50, sma200
    if last < sma50 < sma200:
        return "bearish", sma50, sma200
    return "neutral", sma50, sma200


def extract(symbol: str, bars: Sequence[DailyBar], max_levels: int = 8) -> Extraction:
    """The levels and direction of ``bars`` (oldest first); ExtractionError when there are none."""
    if len(bars) < MIN_BARS:
        raise ExtractionError(f"{symbol}: {len(bars)} daily bars stored, at least {MIN_BARS} "
                              "are needed to find levels")
    points = swing_points(bars)
    if not points:
        raise ExtractionError(f"{symbol}: no swing highs or lows in {len(bars)} daily bars "
                              f"({bars[0].day} → {bars[-1].day})")
    tolerance = tolerance_of(bars)
    clusters: list[list[tuple[date, float]]] = []
    for day, price in sorted(points, key=lambda p: (p[1], p[0])):
        if clusters:
            current = clusters[-1]
            mean = sum(p for _, p in current) / len(current)
            if price - mean <= tolerance:
                current.append((day, price))
                continue
        clusters.append([(day, price)])
    last_close = bars[-1].close
    levels = []
    for members in clusters:
        price = round(sum(p for _, p in members) / len(members), 4)
        days = [d for d, _ in members]
        levels.append(Level("support" if price < last_close else "resistance", price,
                            len(members), min(days), max(days)))
    levels.sort(key=lambda lv: (-lv.strength, -lv.last_touch.toordinal(), abs(lv.price - last_close),
                                lv.price))
    half = max_levels // 2
    chosen = [lv for kind in ("support", "resistance")
              for lv in [x for x in levels if x.kind == kind][:half]]
    chosen += [lv for lv in levels if lv not in chosen][:max_levels - len(chosen)]
    kept = sorted(chosen, key=lambda lv: lv.price, reverse=True)
    direction, sma50, sma200 = direction_of([b.close for b in bars])
    return Extraction(kept, direction, last_close, tolerance, sma50, sma200)
