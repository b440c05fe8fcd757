"""The /contracts page in Chromium against a live stack: the table arrives by itself when the
first snapshot lands; Refresh keeps the table and swaps in the new one; a day added to the
lake shows after a refresh; a failed refresh shows a hint beside the age and keeps the table;
the table sorts, filters and opens a contract's days as a calendar."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from e2e.helpers import assert_same_document, csp_violations, mark, wait_sse_open
from jobs.contracts.calendar import next_trading_day
from jobs.contracts.demo import write_demo_lake
from tests.stack import Stack


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with no snapshot yet, a one-year demo lake, and a catalog that takes 1.5 s live
    (every build fetches it), so a build is on screen long enough to be seen."""
    data = tmp_path_factory.mktemp("e2e-contracts")
    lake = data / "lake"
    write_demo_lake(lake / "v1" / "ticks", "SHFE", "cu", years=1)
    env = {"MARKETDESK_LAKE_DIR": str(lake), "MARKETDESK_CONTRACTS_HISTORY_YEARS": "1",
           "MARKETDESK_CONTRACTS_RULES_LATENCY_MS": "1500", "MARKETDESK_CONTRACTS_CATALOG_TTL_S": "0.5",
           "MARKETDESK_CONTRACTS_SNAPSHOT_TTL_S": "600"}
    with Stack(data / "stack", env=env) as stack:
        stack.lake = lake  # type: ignore[attr-defined]
        yield stack


def rows(page: Page) -> object:
    return page.locator("#contracts-table tbody tr")


def built_at(page: Page) -> str:
    return str(page.get_by_test_id("contracts-table").get_attribute("data-built-at"))


def open_page(page: Page, desk: Stack) -> str:
    page.goto(f"{desk.url}/contracts?exchange=SHFE&var=cu")
    wait_sse_open(page)
    expect(rows(page).first).to_be_visible()  # type: ignore[attr-defined]
    return mark(page)


def test_an_empty_store_shows_building_then_the_table_without_reload(desk: Stack, page: Page) -> None:
    page.goto(f"{desk.url}/contracts?exchange=SHFE&var=cu")
    token = mark(page)
    expect(page.get_by_test_id("building")).to_have_text("Building snapshot…")
    expect(page.get_by_test_id("building-progress")).to_be_visible()
    expect(rows(page).first).to_be_visible(timeout=20_000)  # type: ignore[attr-defined]
    assert_same_document(page, token)
    expect(page.get_by_test_id("building")).to_have_count(0)
    expect(page.get_by_test_id("building-progress")).to_have_count(0)
    snap = httpx.get(f"{desk.url}/api/contracts?exchange=SHFE&var=cu", timeout=10).json()
    expect(rows(page)).to_have_count(len(snap["contracts"]))  # type: ignore[arg-type]
    expect(page.get_by_test_id("count-stale")).to_contain_text(str(snap["completeness"]["stale"]))
    expect(page.get_by_test_id("timings")).to_contain_text("total")
    age = page.get_by_test_id("snapshot-age")
    expect(age).to_have_text(re.compile(r"^\d+ s$"))
    expect(age).not_to_have_text(str(age.text_content()))  # it ticks, with no server round trip
    assert csp_violations(page) == []


def test_refresh_keeps_the_table_and_swaps_in_the_new_one(desk: Stack, page: Page) -> None:
    token = open_page(page, desk)
    before = built_at(page)
    n = rows(page).count()  # type: ignore[attr-defined]
    page.get_by_test_id("refresh-button").click()
    progress = page.get_by_test_id("building-progress")
    expect(progress).to_be_visible()
    expect(progress).to_contain_text("Rebuilding")
    expect(rows(page)).to_have_count(n)  # type: ignore[arg-type]  # the table stays while it builds
    expect(page.get_by_test_id("contracts-table")).not_to_have_attribute("data-built-at", before,
                                                                           timeout=20_000)
    expect(progress).to_have_count(0)
    expect(rows(page)).to_have_count(n)  # type: ignore[arg-type]
    assert_same_document(page, token)


def test_a_day_added_to_the_lake_shows_after_a_refresh(desk: Stack, page: Page) -> None:
    token = open_page(page, desk)
    snap = httpx.get(f"{desk.url}/api/contracts?exchange=SHFE&var=cu", timeout=10).json()
    stale = next(c for c in snap["contracts"] if c["status"] == "stale")
    new_day = next_trading_day(date.fromisoformat(stale["last_held"]))
    lake: Path = desk.lake  # type: ignore[attr-defined]
    (lake / "v1" / "ticks" / f"symbol={stale['symbol']}" / f"date={new_day.isoformat()}").mkdir()
    row = page.get_by_test_id(f"row-{stale['symbol']}")
    expect(row.get_by_test_id("last-held")).to_have_text(stale["last_held"])
    page.get_by_test_id("refresh-button").click()
    expect(row.get_by_test_id("last-held")).to_have_text(new_day.isoformat(), timeout=20_000)
    expect(row.get_by_test_id("held")).to_contain_text(f"{stale['days_held'] + 1} / ")
    assert_same_document(page, token)


def test_a_failed_refresh_shows_the_hint_and_keeps_the_old_table(desk: Stack, page: Page) -> None:
    token = open_page(page, desk)
    before = built_at(page)
    n = rows(page).count()  # type: ignore[attr-defined]
    lake: Path = desk.lake  # type: ignore[attr-defined]
    away = lake.with_name("lake-away")
    lake.rename(away)
    try:
        page.get_by_test_id("refresh-button").click()
        hint = page.get_by_test_id("refresh-error")
        expect(hint).to_contain_text("last refresh failed:", timeout=20_000)
        expect(hint).to_contain_text("lake folder")
        expect(page.get_by_test_id("building-progress")).to_have_count(0)
        expect(rows(page)).to_have_count(n)  # type: ignore[arg-type]
        assert built_at(page) == before
    finally:
        away.rename(lake)
    page.get_by_test_id("refresh-button").click()
    expect(page.get_by_test_id("contracts-table")).not_to_have_attribute("data-built-at", before,
                                                                           timeout=20_000)
    expect(page.get_by_test_id("refresh-error")).to_have_count(0)  # it does not stick
    assert_same_document(page, token)


def test_the_table_sorts_filters_and_opens_a_contracts_days(desk: Stack, page: Page) -> None:
    open_page(page, desk)
    snap = httpx.get(f"{desk.url}/api/contracts?exchange=SHFE&var=cu", timeout=10).json()
    n_stale = snap["completeness"]["stale"]
    page.get_by_test_id("count-stale").click()
    expect(page.locator("#contracts-table tbody tr:visible")).to_have_count(n_stale)
    page.get_by_test_id("filter-all").click()
    expect(page.locator("#contracts-table tbody tr:visible")).to_have_count(len(snap["contracts"]))
    page.locator("th[data-sort=missing]").click()
    page.locator("th[data-sort=missing]").click()  # descending
    most = max(snap["contracts"], key=lambda c: c["days_missing"])
    expect(rows(page).first.get_by_test_id("missing")).to_have_text(str(most["days_missing"]))  # type: ignore[attr-defined]
    gappy = next(c for c in snap["contracts"] if c["status"] == "incomplete")
    page.get_by_test_id(f"row-{gappy['symbol']}").click()
    panel = page.get_by_test_id("days-panel")
    expect(panel).to_have_attribute("data-symbol", gappy["symbol"])
    expect(panel.get_by_test_id("days-missing")).to_have_text(str(gappy["days_missing"]))
    expect(panel.locator("rect[data-state=missing]")).to_have_count(gappy["days_missing"])
    # embedded, the same page works without the chrome
    page.goto(f"{desk.url}/contracts?exchange=SHFE&var=cu&embed=1")
    expect(page.get_by_test_id("nav")).to_have_count(0)
    expect(rows(page)).to_have_count(len(snap["contracts"]))  # type: ignore[arg-type]
    assert csp_violations(page) == []
