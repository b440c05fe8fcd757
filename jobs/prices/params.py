"""The two inputs every price-related request takes, parsed one way everywhere: dates and tickers."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from jobs.prices.providers import SYMBOL_RE

ISO_DATE_RE = re.compile(r"\A\d{4}-\d{2}-\d{2}\Z")


def iso_date(value: Any) -> date:
    """A calendar date written YYYY-MM-DD (a date object passes). Pydantic alone would also take
    timestamps and datetimes, and its messages do not say which format is expected."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and ISO_DATE_RE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{excerpt(value)} is not a date: use YYYY-MM-DD (e.g. 2025-01-02)")


def excerpt(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to about ``limit`` characters: what an error message may echo of an
    input (a megabyte of bad input must not come back twice in the answer)."""
    text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit])
    return text if len(text) <= limit + 2 else text[:limit] + "…"


def tickers(value: Any, limit: int, per: str) -> list[str]:
    """Upper-cased tickers without duplicates, from a list or a comma/space separated string.

    Linear, and it stops at the first ticker past ``limit``: a request with a hundred thousand
    tickers is refused after reading ``limit + 1`` of them, not after sorting them all out."""
    if isinstance(value, str):
        value = [v for v in value.replace(";", ",").replace(" ", ",").split(",") if v]
    if not isinstance(value, list | tuple):
        raise ValueError('must be a list of tickers (e.g. ["AAPL", "MSFT"])')
    out: dict[str, None] = {}  # ordered, with O(1) membership
    for raw in value:
        symbol = str(raw).strip().upper() if isinstance(raw, str | int) else ""
        if not SYMBOL_RE.fullmatch(symbol):
            raise ValueError(f"{excerpt(raw)} is not a ticker: use 1-10 letters or digits, "
                             "with '.' or '-' allowed after the first (e.g. AAPL, BRK.B)")
        out[symbol] = None
        if len(out) > limit:
            raise ValueError(f"at most {limit} symbols per {per}, got {len(out)} or more")
    if not out:
        raise ValueError("give at least one ticker (e.g. AAPL, MSFT)")
    return list(out)


def end_not_before_start(start: Any, end: date) -> date:
    """The one wording of a range given backwards, reported on end_date."""
    if isinstance(start, date) and end < start:
        raise ValueError(f"must be on or after start_date ({start.isoformat()}), got {end.isoformat()}")
    return end
