"""The /symbols board in a browser: stale and fresh cards, Refresh disabled on every open page
while it runs, "Already refreshing", a card turning stale by itself, add and remove."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from e2e.helpers import assert_same_document, mark, wait_sse_open
from jobs.db import utcnow
from tests.stack import Stack
from tests.symbols.helpers import set_last_updated

WARNING = "rgb(183, 121, 31)"  # --warn in static/app.css


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose first refresh of a symbol takes a while (1.5 s to download its bars), and
    whose worker looks for cards crossing the threshold every second."""
    env = {"MARKETDESK_SYNTHETIC_LATENCY_MS": "1500", "MARKETDESK_SYMBOL_STALENESS_CHECK_SECONDS": "1",
           "MARKETDESK_HEARTBEAT_SECONDS": "0.5"}
    with Stack(tmp_path_factory.mktemp("e2e-symbols"), env=env) as stack:
        yield stack


def track(stack: Stack, symbol: str, refresh: bool = True) -> None:
    r = httpx.post(f"{stack.url}/api/symbols", json={"symbol": symbol}, timeout=10)
    assert r.status_code == 201, r.text
    if refresh:
        r = httpx.post(f"{stack.url}/api/symbols/{symbol}/refresh?wait=30", timeout=40)
        assert r.status_code == 200, r.text


def open_board(page: Page, stack: Stack, query: str = "") -> None:
    page.goto(f"{stack.url}/symbols{query}")
    wait_sse_open(page)


def test_a_stale_card_has_the_banner_and_the_look_and_a_fresh_one_has_neither(
        board: Stack, page: Page) -> None:
    track(board, "FRESHA")
    track(board, "OLDB")
    set_last_updated(board, "OLDB", utcnow() - timedelta(hours=72))
    track(board, "HOURSC")
    set_last_updated(board, "HOURSC", utcnow() - timedelta(hours=3, minutes=5))
    track(board, "NEVERD", refresh=False)
    open_board(page, board)

    stale = page.get_by_test_id("symbol-card-OLDB")
    expect(stale).to_have_attribute("data-stale", "true")
    expect(stale.get_by_test_id("staleness-banner")).to_have_text("Data is 72h old - may be outdated")
    expect(stale.get_by_test_id("last-updated")).to_have_text("Last updated 3 days ago")
    expect(stale).to_have_css("opacity", "0.8")
    expect(stale).to_have_css("border-left-color", WARNING)
    expect(stale).to_have_css("border-left-width", "3px")

    for symbol, ago in (("FRESHA", "just now"), ("HOURSC", "3h ago")):
        fresh = page.get_by_test_id(f"symbol-card-{symbol}")
        expect(fresh).to_have_attribute("data-stale", "false")
        expect(fresh.get_by_test_id("staleness-banner")).to_have_count(0)
        expect(fresh.get_by_test_id("last-updated")).to_have_text(f"Last updated {ago}")
        expect(fresh).to_have_css("opacity", "1")
        expect(fresh).not_to_have_css("border-left-color", WARNING)
        expect(fresh.get_by_test_id("sparkline")).to_be_visible()
        expect(fresh.get_by_test_id("sparkline-level").first).to_be_attached()
        expect(fresh.get_by_test_id("symbol-direction")).to_have_text(
            httpx.get(f"{board.url}/api/symbols/{symbol}").json()["direction"])

    never = page.get_by_test_id("symbol-card-NEVERD")
    expect(never.get_by_test_id("staleness-banner")).to_have_text("Never updated")
    expect(never.get_by_test_id("last-updated")).to_have_text("Never updated")
    expect(never).to_have_css("opacity", "0.8")


def test_refresh_disables_the_button_on_every_open_page_and_enables_it_again(
        board: Stack, context: BrowserContext) -> None:
    track(board, "SLOWE", refresh=False)  # no bars yet: the refresh downloads them first
    pages = [context.new_page(), context.new_page()]
    tokens = []
    for p in pages:
        open_board(p, board)
        tokens.append(mark(p))
        expect(p.get_by_test_id("symbol-card-SLOWE").get_by_test_id("refresh-button")).to_be_enabled()

    pages[0].get_by_test_id("symbol-card-SLOWE").get_by_test_id("refresh-button").click()
    for p in pages:
        card = p.get_by_test_id("symbol-card-SLOWE")
        expect(card.get_by_test_id("refresh-button")).to_be_disabled()
        expect(card.get_by_test_id("spinner")).to_be_visible()
        expect(card.get_by_test_id("refresh-button")).to_have_text("Refreshing…")
    for p, token in zip(pages, tokens, strict=True):
        card = p.get_by_test_id("symbol-card-SLOWE")
        expect(card.get_by_test_id("refresh-button")).to_be_enabled(timeout=20_000)
        expect(card.get_by_test_id("refresh-button")).to_have_text("Refresh")
        expect(card.get_by_test_id("spinner")).to_have_count(0)
        expect(card).to_have_attribute("data-stale", "false")
        expect(card.get_by_test_id("staleness-banner")).to_have_count(0)
        expect(card.get_by_test_id("level").first).to_be_visible()
        assert_same_document(p, token)


def test_a_second_refresh_is_told_already_refreshing(board: Stack, context: BrowserContext) -> None:
    track(board, "TWICEF", refresh=False)
    first = context.new_page()
    open_board(first, board)
    # a page that has not heard of the first refresh yet: its live stream is cut
    second = context.new_page()
    second.route("**/events?*", lambda route: route.abort())
    second.goto(f"{board.url}/symbols")

    first.get_by_test_id("symbol-card-TWICEF").get_by_test_id("refresh-button").click()
    expect(first.get_by_test_id("symbol-card-TWICEF").get_by_test_id("spinner")).to_be_visible()
    card = second.get_by_test_id("symbol-card-TWICEF")
    expect(card.get_by_test_id("refresh-button")).to_be_enabled()  # it does not know
    card.get_by_test_id("refresh-button").click()
    expect(card.get_by_test_id("symbol-note")).to_have_text("Already refreshing")
    expect(card.get_by_test_id("refresh-button")).to_be_disabled()
    jobs = httpx.get(f"{board.url}/api/jobs?kind=symbols.refresh&limit=200").json()["jobs"]
    assert len([j for j in jobs if j["params"]["symbol"] == "TWICEF"]) == 1
    expect(first.get_by_test_id("symbol-card-TWICEF").get_by_test_id("refresh-button")) \
        .to_be_enabled(timeout=20_000)


def test_a_card_turns_stale_on_the_open_page_when_it_crosses_the_threshold(
        board: Stack, page: Page) -> None:
    track(board, "CROSSG")
    # 4 seconds short of the 48 h threshold
    set_last_updated(board, "CROSSG", utcnow() - timedelta(hours=48) + timedelta(seconds=4))
    open_board(page, board)
    token = mark(page)
    card = page.get_by_test_id("symbol-card-CROSSG")
    expect(card).to_have_attribute("data-stale", "false")
    expect(card.get_by_test_id("staleness-banner")).to_have_count(0)
    # the worker's check runs every second; the page is told, it does not poll
    expect(card).to_have_attribute("data-stale", "true", timeout=15_000)
    expect(card.get_by_test_id("staleness-banner")).to_have_text("Data is 48h old - may be outdated")
    expect(card).to_have_css("opacity", "0.8")
    assert_same_document(page, token)
    # and fresh again when its refresh completes
    card.get_by_test_id("refresh-button").click()
    expect(card).to_have_attribute("data-stale", "false", timeout=15_000)
    expect(card.get_by_test_id("staleness-banner")).to_have_count(0)
    assert_same_document(page, token)


def test_add_and_remove_reach_every_open_page_and_the_board_embeds(
        board: Stack, context: BrowserContext) -> None:
    editor, watcher = context.new_page(), context.new_page()
    open_board(editor, board)
    open_board(watcher, board, "?embed=1")
    token = mark(watcher)
    expect(watcher.get_by_test_id("nav")).to_have_count(0)  # embedded: no chrome
    editor.get_by_test_id("symbol-input").fill("not valid!")
    editor.get_by_test_id("add-button").click()
    expect(editor.get_by_test_id("symbol-error")).to_contain_text("is not a ticker")
    editor.get_by_test_id("symbol-input").fill("addh")
    editor.get_by_test_id("add-button").click()
    expect(editor.get_by_test_id("symbol-added")).to_have_text("Tracking ADDH")
    for p in (editor, watcher):
        card = p.get_by_test_id("symbol-card-ADDH")
        expect(card.get_by_test_id("staleness-banner")).to_have_text("Never updated")
    editor.get_by_test_id("symbol-input").fill("ADDH")
    editor.get_by_test_id("add-button").click()
    expect(editor.get_by_test_id("symbol-error")).to_have_text("ADDH is already tracked")
    editor.get_by_test_id("symbol-card-ADDH").get_by_test_id("remove-button").click()
    for p in (editor, watcher):
        expect(p.get_by_test_id("symbol-card-ADDH")).to_have_count(0)
    assert httpx.get(f"{board.url}/api/symbols/ADDH").status_code == 404
    assert_same_document(watcher, token)
