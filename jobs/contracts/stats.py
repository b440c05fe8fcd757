"""Per-contract coverage and status, from the catalog and the lake's scans.

Expected trading days run from the open date to the earlier of expiry and today. Days held are
the expected days with a date folder; no-data days (``_no_data_dates.json``) count as covered.
Statuses: ``not-downloaded`` (nothing held), ``stale`` (an active contract whose last day held
is before the last trading day), ``incomplete`` (days missing), ``complete``, ``unknown`` (the
catalog lacks its dates, or it has not opened yet); each with its reason.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from jobs.contracts import calendar
from jobs.contracts.catalog import Contract
from jobs.contracts.store import Scan

STATUSES = ("not-downloaded", "incomplete", "stale", "complete", "unknown")


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _relative(contract_start: date, scan: Scan | None, n: int) -> tuple[int, int]:
    """The scan's held days and no-data days as masks relative to ``contract_start``, cut to
    ``n`` days."""
    if scan is None:
        return 0, 0
    full = (1 << n) - 1
    held = 0
    if scan.first_date is not None and scan.dates:
        bits = int.from_bytes(scan.dates, "little")
        shift = scan.first_date.toordinal() - contract_start.toordinal()
        held = (bits << shift if shift >= 0 else bits >> -shift) & full
    no_data = 0
    base = contract_start.toordinal()
    for text in scan.no_data:
        bit = date.fromisoformat(text).toordinal() - base
        if 0 <= bit < n:
            no_data |= 1 << bit
    return held, no_data


def _day(start: date, mask: int, last: bool) -> date | None:
    if not mask:
        return None
    bit = mask.bit_length() - 1 if last else (mask & -mask).bit_length() - 1
    return start + timedelta(days=bit)


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
    start = contract.open_date
    if start > today:
        return row | {"status": "unknown", "reason": f"not listed until {start.isoformat()}"}
    end = min(contract.expiry, today)
    n = end.toordinal() - start.toordinal() + 1
    expected = calendar.window(start, end)
    n_expected = expected.bit_count()
    held, no_data = _relative(start, scan, n)
    held &= expected
    covered = (held | no_data) & expected
    n_held, n_covered = held.bit_count(), covered.bit_count()
    row |= {"expected_days": n_expected, "days_held": n_held,
            "days_missing": n_expected - n_covered, "no_data_days": n_covered - n_held,
            "first_held": _iso(_day(start, held, False)), "last_held": _iso(_day(start, held, True)),
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
                      f"last day held {_iso(start + timedelta(days=last_covered))} is {behind} trading "
                      f"day{'s' if behind != 1 else ''} behind {_iso(start + timedelta(days=last_trading))}"}
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
    start, end = contract.open_date, min(contract.expiry, today)
    n = end.toordinal() - start.toordinal() + 1
    expected = calendar.window(start, end)
    held, no_data = _relative(start, scan, n)
    held &= expected
    no_data &= expected & ~held
    missing = expected & ~held & ~no_data

    def days(mask: int) -> list[str]:
        return [(start + timedelta(days=i)).isoformat() for i in range(n) if mask >> i & 1]

    return {"symbol": contract.symbol, "start": start.isoformat(), "end": end.isoformat(),
            "held": days(held), "missing": days(missing), "no_data": days(no_data)}
