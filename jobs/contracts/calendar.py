"""The Chinese futures exchanges' calendar: weekdays that are not mainland public holidays
(the Shanghai exchange's closures, from the holidays library; the exchanges close together).

Sets of days are kept as bit masks (bit i is ``EPOCH + i days``): a contract's expected days,
the days the lake holds and its no-data days combine with a few integer operations, so a
snapshot of a thousand contracts × a thousand days costs milliseconds, not a million set
lookups.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from functools import lru_cache

from jobs import calendars

MARKET = "XSHG"
EPOCH = date(1990, 1, 1)
_EPOCH_ORD = EPOCH.toordinal()


def is_trading_day(day: date) -> bool:
    return calendars.is_trading_day(MARKET, day)


def trading_days(start: date, end: date) -> list[date]:
    """Every trading day from start to end, both included."""
    return from_mask(trading_mask(start, end))


def trading_day_on_or_after(day: date) -> date:
    while not is_trading_day(day):
        day += timedelta(days=1)
    return day


def next_trading_day(day: date) -> date:
    return trading_day_on_or_after(day + timedelta(days=1))


def last_trading_day_on_or_before(day: date) -> date:
    while not is_trading_day(day):
        day -= timedelta(days=1)
    return day


# -- masks -------------------------------------------------------------------------------------
def offset(day: date) -> int:
    return day.toordinal() - _EPOCH_ORD


def day_at(bit: int) -> date:
    return date.fromordinal(_EPOCH_ORD + bit)


@lru_cache(maxsize=128)
def _year_mask(year: int) -> int:
    day, mask = date(year, 1, 1), 0
    while day.year == year:
        if is_trading_day(day):
            mask |= 1 << offset(day)
        day += timedelta(days=1)
    return mask


def range_mask(start: date, end: date) -> int:
    if end < start:
        return 0
    return ((1 << (end.toordinal() - start.toordinal() + 1)) - 1) << offset(start)


def trading_mask(start: date, end: date) -> int:
    """The trading days from start to end, both included, as a mask."""
    if end < start:
        return 0
    mask = 0
    for year in range(start.year, end.year + 1):
        mask |= _year_mask(year)
    return mask & range_mask(start, end)


@lru_cache(maxsize=8)
def _through(year: int) -> int:
    """Every trading day from EPOCH to the end of ``year``."""
    mask = 0
    for y in range(EPOCH.year, year + 1):
        mask |= _year_mask(y)
    return mask


def window(start: date, end: date) -> int:
    """The trading days from start to end as a mask relative to ``start`` (bit i: start + i
    days): a contract's days as a small number, whatever its distance from EPOCH."""
    if end < start:
        return 0
    n = end.toordinal() - start.toordinal() + 1
    return (_through(end.year) >> offset(start)) & ((1 << n) - 1)


def to_mask(days: Iterable[date]) -> int:
    mask = 0
    for day in days:
        mask |= 1 << offset(day)
    return mask


def from_mask(mask: int) -> list[date]:
    out = []
    bit = 0
    while mask:
        low = mask & -mask
        bit = low.bit_length() - 1
        out.append(day_at(bit))
        mask ^= low
    return out


def first_day(mask: int) -> date | None:
    return day_at((mask & -mask).bit_length() - 1) if mask else None


def last_day(mask: int) -> date | None:
    return day_at(mask.bit_length() - 1) if mask else None


def pack(mask: int) -> tuple[date | None, bytes]:
    """A mask stored compactly: its first day, and the bits from there on."""
    first = first_day(mask)
    if first is None:
        return None, b""
    bits = mask >> offset(first)
    return first, bits.to_bytes((bits.bit_length() + 7) // 8, "little")


def unpack(first: date | None, bits: bytes) -> int:
    if first is None or not bits:
        return 0
    return int.from_bytes(bits, "little") << offset(first)
