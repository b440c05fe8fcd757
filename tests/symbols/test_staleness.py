"""Staleness is computed on every read from last_updated and the threshold setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobs.settings import SettingsError, read_settings
from jobs.symbols.settings import SymbolsSettings
from jobs.symbols.staleness import calculate_staleness, relative

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_fresh_data() -> None:
    got = calculate_staleness(NOW - timedelta(hours=1), NOW, 48)
    assert got == {"is_stale": False, "hours_since_update": 1.0, "staleness_message": None}


def test_stale_data_says_hours() -> None:
    got = calculate_staleness(NOW - timedelta(hours=72), NOW, 48)
    assert got["is_stale"] is True
    assert got["hours_since_update"] == 72.0
    assert got["staleness_message"] == "Data is 72h old - may be outdated"


def test_never_updated() -> None:
    assert calculate_staleness(None, NOW, 48) == {
        "is_stale": True, "hours_since_update": None, "staleness_message": "Never updated"}


def test_exactly_at_the_threshold_is_not_stale_and_just_over_is() -> None:
    at = calculate_staleness(NOW - timedelta(hours=48), NOW, 48)
    assert at["is_stale"] is False and at["staleness_message"] is None
    over = calculate_staleness(NOW - timedelta(hours=48, seconds=1), NOW, 48)
    assert over["is_stale"] is True
    assert over["staleness_message"] == "Data is 48h old - may be outdated"
    assert calculate_staleness(NOW - timedelta(hours=49), NOW, 48)["is_stale"] is True


def test_exactly_at_the_threshold_measured_a_moment_later_is_still_not_stale() -> None:
    # the source design's own test: computed with the clock a few microseconds on
    assert calculate_staleness(datetime.now(UTC) - timedelta(hours=48), threshold=48)["is_stale"] is False


def test_from_seven_days_the_message_counts_days() -> None:
    just_under = calculate_staleness(NOW - timedelta(hours=167), NOW, 48)
    assert just_under["staleness_message"] == "Data is 167h old - may be outdated"
    week = calculate_staleness(NOW - timedelta(days=7), NOW, 48)
    assert week["staleness_message"] == "Data is 7 days old - may be outdated"
    assert calculate_staleness(NOW - timedelta(days=10, hours=20), NOW, 48)["staleness_message"] == \
        "Data is 10 days old - may be outdated"


def test_naive_timestamps_are_taken_as_utc() -> None:
    naive = (NOW - timedelta(hours=3)).replace(tzinfo=None)
    assert calculate_staleness(naive, NOW, 48)["hours_since_update"] == 3.0


def test_the_threshold_setting_under_both_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARKETDESK_SYMBOL_STALENESS_HOURS", raising=False)
    monkeypatch.delenv("SYMBOL_STALENESS_HOURS", raising=False)
    assert read_settings(SymbolsSettings).symbol_staleness_hours == 48
    monkeypatch.setenv("SYMBOL_STALENESS_HOURS", "24")
    assert read_settings(SymbolsSettings).symbol_staleness_hours == 24
    monkeypatch.setenv("MARKETDESK_SYMBOL_STALENESS_HOURS", "12")
    assert read_settings(SymbolsSettings).symbol_staleness_hours == 12
    threshold = read_settings(SymbolsSettings).symbol_staleness_hours
    assert calculate_staleness(NOW - timedelta(hours=13), NOW, threshold)["is_stale"] is True
    assert calculate_staleness(NOW - timedelta(hours=11), NOW, threshold)["is_stale"] is False
    monkeypatch.setenv("MARKETDESK_SYMBOL_STALENESS_HOURS", "soon")
    with pytest.raises(SettingsError, match="SYMBOL_STALENESS_HOURS='soon'"):
        read_settings(SymbolsSettings)


def test_relative_time() -> None:
    assert relative(None, NOW) == "never"
    assert relative(NOW - timedelta(seconds=20), NOW) == "just now"
    assert relative(NOW - timedelta(minutes=5), NOW) == "5m ago"
    assert relative(NOW - timedelta(hours=3, minutes=10), NOW) == "3h ago"
    assert relative(NOW - timedelta(days=3), NOW) == "3 days ago"


def test_nothing_computed_from_the_clock_changes_before_next_change() -> None:
    from jobs.symbols.staleness import next_change

    for threshold in (48, 0.5, 1.25):
        for age in (0, 1, 179, 180, 181, 1799, 3 * 3600 + 7, 48 * 3600 - 2, 48 * 3600, 30 * 86400 + 5):
            last = NOW - timedelta(seconds=age)
            until = next_change(last, NOW, threshold)
            assert until is not None and until > NOW
            first = calculate_staleness(last, NOW, threshold)
            for s in range(0, int((until - NOW).total_seconds())):
                assert calculate_staleness(last, NOW + timedelta(seconds=s, microseconds=999_999),
                                           threshold) == first, (threshold, age, s)
    assert next_change(None, NOW, 48) is None
