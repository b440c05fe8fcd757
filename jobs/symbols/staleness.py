"""Staleness, computed on every read and never stored."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from jobs.db import as_utc, utcnow
from jobs.symbols.settings import symbols_settings

NEVER = "Never updated"


def threshold_hours() -> float:
    return symbols_settings().symbol_staleness_hours


def calculate_staleness(last_updated: datetime | None, now: datetime | None = None,
                        threshold: float | None = None) -> dict[str, Any]:
    """{is_stale, hours_since_update, staleness_message} of data last updated then.

    Exactly at the threshold is not stale; the age is counted in whole seconds, so the moment
    it takes to compute does not tip "exactly at" over."""
    threshold = threshold_hours() if threshold is None else threshold
    if last_updated is None:
        return {"is_stale": True, "hours_since_update": None, "staleness_message": NEVER}
    now = now or utcnow()
    seconds = math.floor((now - as_utc(last_updated)).total_seconds())  # type: ignore[operator]
    hours = seconds / 3600
    stale = seconds > threshold * 3600
    message = None
    if stale:
        if hours >= 7 * 24:
            message = f"Data is {int(hours // 24)} days old - may be outdated"
        else:
            message = f"Data is {round(hours)}h old - may be outdated"
    return {"is_stale": stale, "hours_since_update": round(hours, 1), "staleness_message": message}


# Every field computed from the clock (is_stale, hours_since_update to 0.1 h, the message in
# hours or days) changes only when the age in whole seconds passes a multiple of this, or the
# threshold itself.
_STEP_SECONDS = 180


def next_change(last_updated: datetime | None, now: datetime, threshold: float) -> datetime | None:
    """The first moment after ``now`` at which ``calculate_staleness`` could answer otherwise
    (None: never, for data never updated)."""
    if last_updated is None:
        return None
    last = as_utc(last_updated)
    age = math.floor((now - last).total_seconds())  # type: ignore[operator]
    step = last + timedelta(seconds=_STEP_SECONDS * (age // _STEP_SECONDS + 1))  # type: ignore[operator]
    limit = threshold * 3600
    if age <= limit:
        step = min(step, last + timedelta(seconds=math.floor(limit) + 1))  # type: ignore[operator]
    return step


def relative(last_updated: datetime | None, now: datetime | None = None) -> str:
    """"3h ago", "2 days ago", "just now"; "never" without a time."""
    if last_updated is None:
        return "never"
    seconds = max(0, int(((now or utcnow()) - as_utc(last_updated)).total_seconds()))  # type: ignore[operator]
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400} days ago"
