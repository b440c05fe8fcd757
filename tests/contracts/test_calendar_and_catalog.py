"""The listing rules on the Chinese exchange calendar, hand-checked, and the JSON catalog file."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from jobs.contracts import calendar
from jobs.contracts.catalog import CatalogError, expiry_of, open_of, read_catalog_file, rules_contracts


@pytest.mark.parametrize(("year", "month", "expiry", "why"), [
    (2025, 10, date(2025, 10, 15), "a Wednesday, open"),
    (2024, 6, date(2024, 6, 17), "the 15th is a Saturday: Monday"),
    (2024, 2, date(2024, 2, 19), "Spring Festival: closed 9-17 Feb 2024, then a weekend"),
    (2026, 2, date(2026, 2, 24), "a Sunday, then Spring Festival 16-23 Feb 2026"),
    (2023, 10, date(2023, 10, 16), "the 15th is a Sunday (Golden Week ended on the 6th)"),
])
def test_expiry_is_the_15th_or_the_next_trading_day(year: int, month: int, expiry: date, why: str) -> None:
    assert expiry_of(year, month) == expiry, why


def test_a_contract_opens_the_trading_day_after_last_years_same_month_expired() -> None:
    assert open_of(2025, 1) == date(2024, 1, 16)  # cu2401 expired Monday 15 Jan 2024
    assert open_of(2025, 2) == date(2024, 2, 20)  # cu2402 expired on 19 Feb 2024 (holiday-shifted)
    assert open_of(2024, 10) == date(2023, 10, 17)


def test_golden_week_and_weekends_are_not_trading_days() -> None:
    week = calendar.trading_days(date(2024, 9, 30), date(2024, 10, 11))
    # 1-7 Oct 2024 closed; Sat 12 Oct was a make-up working day for offices, not for exchanges
    assert week == [date(2024, 9, 30), date(2024, 10, 8), date(2024, 10, 9), date(2024, 10, 10),
                    date(2024, 10, 11)]
    assert not calendar.is_trading_day(date(2024, 10, 12))


def test_masks_round_trip() -> None:
    days = [date(2024, 1, 2), date(2024, 1, 5), date(2025, 3, 3)]
    mask = calendar.to_mask(days)
    assert calendar.from_mask(mask) == days
    first, bits = calendar.pack(mask)
    assert first == days[0] and calendar.unpack(first, bits) == mask
    assert calendar.first_day(mask) == days[0] and calendar.last_day(mask) == days[-1]
    assert calendar.trading_mask(date(2024, 1, 1), date(2024, 1, 7)).bit_count() == 4  # 1 Jan closed


def test_rules_list_twelve_months_ahead_and_the_history_asked_for() -> None:
    today = date(2025, 6, 20)
    contracts = rules_contracts("SHFE", "cu", today, years=1)
    symbols = [c.symbol for c in contracts]
    # expired within a year before today, and everything listed: up to twelve months ahead
    assert symbols[0] == "SHFE.cu2407" and symbols[-1] == "SHFE.cu2606"
    assert len(symbols) == len(set(symbols)) == 24
    assert all(c.open_date <= today for c in contracts if c.open_date)
    cu2606 = contracts[-1]
    assert cu2606.open_date == date(2025, 6, 17) and cu2606.expiry == date(2026, 6, 15)


def test_catalog_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"exchanges": {"SHFE": {"cu": [
        {"symbol": "SHFE.cu2501", "open_date": "2024-01-16", "expiry": "2025-01-15"},
        {"symbol": "SHFE.cu2502", "open_date": None, "expiry": "2025-02-17"}]}}}))
    found = read_catalog_file(path)
    assert [c.symbol for c in found["SHFE"]["cu"]] == ["SHFE.cu2501", "SHFE.cu2502"]
    assert found["SHFE"]["cu"][1].open_date is None
    for text, words in [("{not json", "not valid JSON"), ('{"exchanges": {"shfe": {}}}', "capital"),
                        ('{"contracts": []}', "does not follow the format")]:
        path.write_text(text)
        with pytest.raises(CatalogError, match=words):
            read_catalog_file(path)
    with pytest.raises(CatalogError, match="cannot read"):
        read_catalog_file(tmp_path / "missing.json")
