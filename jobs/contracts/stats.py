"""Per-contract coverage and status, from the catalog and the lake's scans.

Expected trading days run from the open date to the earlier of expiry and today. Days held are
the expected days with a date folder; no-data days (``_no_data_dates.json``) count as covered.
Statuses: ``not-downloaded`` (nothing held), ``stale`` (an active contract whose last day held
is before the last trading day), ``incomplete`` (days missing), ``complete``, ``unknown`` (the
catalog lacks its dates, or it has not opened yet); each with its reason.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from jobs.contracts import calendar
from jobs.contracts.catalog import Contract
from jobs.contracts.lake import held_mask, no_data_mask
from jobs.contracts.store import Scan

STATUSES = ("not-downloaded", "incomplete", "stale", "complete", "unknown")


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def contract_stats(contract: Contract, scan: Scan | None, today: date) -> dict[str, Any]:
    row: dict[str, Any] = {
        "symbol": contract.symbol, "open_date": _iso(contract.open_date),
        "expiry": _iso(contract.expiry), "expired": bool(contract.expiry and contract.expiry < today),
        "expected_days": 0, "days_held": 0, "days_missing": 0, "no_data_days": 0,
        "first_held": None, "last_held": None, "coverage": None,
    }
    if contract.open_date is None or contract.expiry is None:
        missing = "open date" if contract.open_date is None else "expiry"
        return row | {"status": "unknown", "reason": f"the catalog gives no {missing}"}
    if contract.open_date > today:
        return row | {"status": "unknown", "reason": f"not listed until {contract.open_date.isoformat()}"}
    end = min(contract.expiry, today)
    expected = calendar.trading_mask(contract.open_date, end)
    n_expected = expected.bit_count()
    held = held_mask(scan) & expected
    covered = (held | no_data_mask(scan)) & expected
    n_held, n_covered = held.bit_count(), covered.bit_count()
    row |= {"expected_days": n_expected, "days_held": n_held,
            "days_missing": n_expected - n_covered, "no_data_days": n_covered - n_held,
            "first_held": _iso(calendar.first_day(held)), "last_held": _iso(calendar.last_day(held)),
            "coverage": round(n_covered / n_expected, 4) if n_expected else None}
    if n_expected == 0:
        return row | {"status": "unknown", "reason": "no trading day yet"}
    if n_covered == 0:
        why = "no folder in the lake" if scan is None else "no day of its range in the lake"
        return row | {"status": "not-downloaded", "reason": why}
    last_trading = expected.bit_length() - 1
    last_covered = covered.bit_length() - 1
    if contract.expiry >= today and last_covered < last_trading:
        behind = (expected >> (last_covered + 1)).bit_count()
        return row | {"status": "stale", "reason":
                      f"last day held {calendar.day_at(last_covered).isoformat()} is {behind} trading "
                      f"day{'s' if behind != 1 else ''} behind {calendar.day_at(last_trading).isoformat()}"}
    if n_covered < n_expected:
        return row | {"status": "incomplete",
                      "reason": f"{n_expected - n_covered} of {n_expected} trading days missing"}
    return row | {"status": "complete", "reason": f"all {n_expected} trading days held"}


def completeness(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for row in rows:
        counts[row["status"]] += 1
    return counts


def contract_days(contract: Contract, scan: Scan | None, today: date) -> dict[str, Any]:
    """One contract's held, missing and no-data days (for its calendar)."""
    if contract.open_date is None or contract.expiry is None or contract.open_date > today:
        return {"symbol": contract.symbol, "start": None, "end": None, "held": [], "missing": [],
                "no_data": []}
    end = min(contract.expiry, today)
    expected = calendar.trading_mask(contract.open_date, end)
    held = held_mask(scan) & expected
    no_data = no_data_mask(scan) & expected & ~held
    missing = expected & ~held & ~no_data
    return {"symbol": contract.symbol, "start": contract.open_date.isoformat(), "end": end.isoformat(),
            "held": [d.isoformat() for d in calendar.from_mask(held)],
            "missing": [d.isoformat() for d in calendar.from_mask(missing)],
            "no_data": [d.isoformat() for d in calendar.from_mask(no_data)]}
