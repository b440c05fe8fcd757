"""Per-contract statuses on hand-checked contracts, with today fixed."""

from __future__ import annotations

from datetime import date

from jobs.contracts import calendar
from jobs.contracts.catalog import Contract
from jobs.contracts.stats import completeness, contract_days, contract_stats
from jobs.contracts.store import Scan

TODAY = date(2024, 2, 21)  # a Wednesday, just after the Spring Festival
# cu2402: open 2023-02-16, expiry 2024-02-19 (holiday-shifted); expired by TODAY
CU2402 = Contract("SHFE.cu2402", date(2023, 2, 16), date(2024, 2, 19))
# an active contract: open 2024-02-20, expiry 2025-02-17
CU2502 = Contract("SHFE.cu2502", date(2024, 2, 20), date(2025, 2, 17))


def scan_of(symbol: str, days: list[date], no_data: tuple[str, ...] = ()) -> Scan:
    first, bits = calendar.pack(calendar.to_mask(days))
    return Scan(symbol, 1, len(days), first, max(days) if days else None, bits, no_data)


def test_complete_incomplete_and_not_downloaded() -> None:
    days = calendar.trading_days(CU2402.open_date, CU2402.expiry)  # type: ignore[arg-type]
    assert len(days) == 244 and days[-1] == date(2024, 2, 19) and date(2024, 2, 15) not in days
    full = contract_stats(CU2402, scan_of(CU2402.symbol, days), TODAY)
    assert full["status"] == "complete" and full["expired"] and full["coverage"] == 1.0
    assert (full["expected_days"], full["days_held"], full["days_missing"]) == (244, 244, 0)
    assert full["first_held"] == "2023-02-16" and full["last_held"] == "2024-02-19"

    gaps = contract_stats(CU2402, scan_of(CU2402.symbol, days[:100] + days[103:]), TODAY)
    assert gaps["status"] == "incomplete" and gaps["days_missing"] == 3
    assert gaps["reason"] == "3 of 244 trading days missing"

    # no folder at all, or only days outside the contract's range
    assert contract_stats(CU2402, None, TODAY)["status"] == "not-downloaded"
    outside = contract_stats(CU2402, scan_of(CU2402.symbol, [date(2022, 5, 5)]), TODAY)
    assert outside["status"] == "not-downloaded" and outside["days_held"] == 0


def test_no_data_days_count_as_covered() -> None:
    days = calendar.trading_days(CU2402.open_date, CU2402.expiry)  # type: ignore[arg-type]
    held = [d for d in days if d not in (days[10], days[20])]
    row = contract_stats(CU2402, scan_of(CU2402.symbol, held, (days[10].isoformat(), days[20].isoformat())),
                         TODAY)
    assert row["status"] == "complete"
    assert (row["days_held"], row["no_data_days"], row["days_missing"]) == (242, 2, 0)
    listing = contract_days(CU2402, scan_of(CU2402.symbol, held, (days[10].isoformat(),)), TODAY)
    assert listing["no_data"] == [days[10].isoformat()] and listing["missing"] == [days[20].isoformat()]
    assert len(listing["held"]) == 242


def test_an_active_contract_behind_the_last_trading_day_is_stale() -> None:
    # open 2024-02-20: the trading days up to TODAY are the 20th and the 21st
    behind = contract_stats(CU2502, scan_of(CU2502.symbol, [date(2024, 2, 20)]), TODAY)
    assert behind["status"] == "stale" and not behind["expired"]
    assert behind["reason"] == "last day held 2024-02-20 is 1 trading day behind 2024-02-21"
    current = contract_stats(CU2502, scan_of(CU2502.symbol, [date(2024, 2, 20), date(2024, 2, 21)]), TODAY)
    assert current["status"] == "complete"
    # up to date but with a hole: incomplete, not stale
    cu2501 = Contract("SHFE.cu2501", date(2024, 1, 16), date(2025, 1, 15))
    held = [d for d in calendar.trading_days(date(2024, 1, 16), TODAY) if d != date(2024, 1, 25)]
    assert contract_stats(cu2501, scan_of(cu2501.symbol, held), TODAY)["status"] == "incomplete"


def test_unknown_when_the_catalog_lacks_dates_or_it_has_not_opened() -> None:
    no_expiry = contract_stats(Contract("SHFE.cu2503", date(2024, 3, 18), None), None, TODAY)
    assert no_expiry["status"] == "unknown" and no_expiry["reason"] == "the catalog gives no expiry"
    later = contract_stats(Contract("SHFE.cu2504", date(2024, 4, 16), date(2025, 4, 15)), None, TODAY)
    assert later["status"] == "unknown" and "not listed until 2024-04-16" in later["reason"]
    assert completeness([no_expiry, later]) == {"not-downloaded": 0, "incomplete": 0, "stale": 0,
                                                "complete": 0, "unknown": 2}
