"""Stored bars: the download order (`prioritize`), saving, missing days and coverage."""

from __future__ import annotations

import copy
import random
import time
from datetime import date, timedelta

from jobs.db import Database
from jobs.prices import store
from jobs.prices.calendar import trading_days
from jobs.prices.providers import Bar

D0 = date(2025, 3, 3)


def days(*offsets: int) -> set[date]:
    return {D0 + timedelta(days=i) for i in offsets}


def span(first: int, last: int) -> set[date]:
    return days(*range(first, last + 1))


# -- prioritize: hand-made cases ------------------------------------------------------------


def test_nothing_missing_means_nothing_to_download() -> None:
    assert store.prioritize({}) == []
    assert store.prioritize({"AAPL": set(), "MSFT": set()}) == []


def test_symbols_missing_nothing_are_left_out() -> None:
    assert store.prioritize({"AAPL": set(), "MSFT": days(1), "IBM": set()}) == ["MSFT"]


def test_the_symbol_that_completes_most_days_goes_first_not_the_smallest_or_first_named() -> None:
    # ZED lacks all ten days; alone it lacks days 5-9, so fetching it first completes five days.
    # MID lacks days 0-4 and ABC only day 0: neither completes anything while ZED still lacks them.
    # Fewest-missing-first or by-name would give ABC, MID, ZED: the reverse.
    missing = {"ABC": days(0), "MID": span(0, 4), "ZED": span(0, 9)}
    assert store.prioritize(missing) == ["ZED", "MID", "ABC"]


def test_gains_are_recounted_after_each_pick() -> None:
    # At first only BIG completes days (3, 4). Once BIG is taken, BBB alone lacks days 1-2
    # (2 days) while AAA alone lacks day 0 (1 day): BBB must come before AAA although AAA
    # has fewer missing days and sorts first.
    missing = {"AAA": days(0, 1), "BBB": days(0, 1, 2), "BIG": days(0, 1, 2, 3, 4)}
    # Round 1: AAA completes 0, BBB completes 0, BIG completes 2 (days 3, 4).
    # Round 2: AAA completes 0 (day 0/1 still lacked by BBB), BBB completes 1 (day 2).
    # Round 3: AAA completes days 0 and 1.
    assert store.prioritize(missing) == ["BIG", "BBB", "AAA"]


def test_ties_go_to_fewest_missing_days_then_to_the_name() -> None:
    # Every day is lacked by at least two symbols, so nobody completes anything at first.
    missing = {"MSFT": span(0, 2), "AAPL": span(0, 2), "ZZZ": days(0)}
    assert store.prioritize(missing) == ["ZZZ", "AAPL", "MSFT"]
    same = {s: span(0, 4) for s in ("TSLA", "AMZN", "GOOG", "META")}
    assert store.prioritize(same) == ["AMZN", "GOOG", "META", "TSLA"]


def test_disjoint_symbols_go_biggest_first() -> None:
    missing = {"ONE": days(0), "TWO": days(1, 2), "THREE": days(3, 4, 5)}
    assert store.prioritize(missing) == ["THREE", "TWO", "ONE"]


def test_the_input_is_left_as_it_was() -> None:
    missing = {"AAA": days(0, 1), "BBB": days(1, 2), "CCC": set()}
    before = copy.deepcopy(missing)
    store.prioritize(missing)
    assert missing == before


def _check_greedy(missing: dict[str, set[date]], order: list[str]) -> None:
    """The docstring's rule, checked step by step, independently of how prioritize computes it."""
    remaining = {s for s, d in missing.items() if d}
    assert sorted(order) == sorted(remaining)
    for pick in order:
        def rank(s: str) -> tuple[int, int, str]:
            others = remaining - {s}
            completes = sum(1 for d in missing[s] if not any(d in missing[o] for o in others))
            return (-completes, len(missing[s]), s)

        assert pick == min(remaining, key=rank), (missing, order)
        remaining.remove(pick)


def test_random_cases_follow_the_rule() -> None:
    rng = random.Random(20250103)
    for _ in range(400):
        names = rng.sample(["AA", "BB", "CC", "DD", "EE", "FF", "GG"], rng.randint(0, 7))
        density = rng.random()
        missing = {n: {D0 + timedelta(days=i) for i in range(15) if rng.random() < density}
                   for n in names}
        _check_greedy(missing, store.prioritize(missing))


def test_a_hundred_symbols_over_decades_is_quick() -> None:
    # The worker computes the order on its event loop: it must not stall it for seconds.
    every_day = trading_days(date(1990, 1, 1), date(2025, 6, 30))
    rng = random.Random(7)
    missing = {f"S{i}": set(every_day[rng.randrange(0, 2000):]) for i in range(100)}
    started = time.perf_counter()
    order = store.prioritize(missing)
    assert time.perf_counter() - started < 2.0
    assert len(order) == 100
    # the symbol missing the most days is alone on the earliest ones: it goes first
    assert order[0] == max(missing, key=lambda s: (len(missing[s]), s))


# -- saving, missing days, coverage against a real database ----------------------------------


def bar(symbol: str, day: date, close: float = 10.0) -> Bar:
    return Bar(symbol=symbol, day=day, open=close, high=close + 1, low=close - 1, close=close,
               volume=1000)


async def test_saving_twice_keeps_the_first_bar_and_counts_only_new_ones(db: Database) -> None:
    jan = trading_days(date(2025, 1, 2), date(2025, 1, 10))
    assert await store.save_bars(db, [bar("AAPL", d, 10.0) for d in jan], "synthetic") == len(jan)
    more = trading_days(date(2025, 1, 6), date(2025, 1, 17))
    new = [d for d in more if d not in jan]
    assert await store.save_bars(db, [bar("AAPL", d, 99.0) for d in more], "alphavantage") == len(new)
    assert await store.save_bars(db, [], "synthetic") == 0
    held = await store.stored_days(db, ["AAPL"], date(2025, 1, 1), date(2025, 1, 31))
    assert held["AAPL"] == set(jan) | set(more)
    import sqlalchemy as sa

    from jobs.prices.models import PriceBar

    bars = PriceBar.__table__  # type: ignore[attr-defined]
    row = await db.run(lambda conn: conn.execute(
        sa.select(bars.c.close, bars.c.provider).where(bars.c.day == jan[-1])).one())
    assert tuple(row) == (10.0, "synthetic")  # not overwritten by the later save


async def test_missing_days_are_the_trading_days_not_held(db: Database) -> None:
    await store.save_bars(db, [bar("MSFT", d) for d in trading_days(date(2025, 1, 2),
                                                                     date(2025, 1, 8))], "x")
    missing = await store.missing_days(db, ["MSFT", "IBM"], date(2025, 1, 1), date(2025, 1, 14))
    # Jan 1 is New Year's Day, Jan 9 a national day of mourning; weekends are never wanted
    assert missing["MSFT"] == {date(2025, 1, 10), date(2025, 1, 13), date(2025, 1, 14)}
    assert missing["IBM"] == {date(2025, 1, d) for d in (2, 3, 6, 7, 8, 10, 13, 14)}


async def test_coverage_reports_first_last_held_and_gaps(db: Database) -> None:
    first = trading_days(date(2025, 1, 2), date(2025, 1, 10))  # 6 days (Jan 9 closed)
    second = trading_days(date(2025, 1, 21), date(2025, 1, 31))  # 9 days
    await store.save_bars(db, [bar("GAPS", d) for d in first + second], "x")
    await store.save_bars(db, [bar("FULL", d) for d in first], "x")
    rows = {c.symbol: c.to_api() for c in await store.coverage(db)}
    # between Jan 10 and Jan 21: Jan 13-17 are trading days (Jan 20 is Martin Luther King day)
    assert rows["GAPS"] == {"symbol": "GAPS", "first_day": "2025-01-02", "last_day": "2025-01-31",
                            "days_held": 15, "gaps": 5}
    assert rows["FULL"] == {"symbol": "FULL", "first_day": "2025-01-02", "last_day": "2025-01-10",
                            "days_held": 6, "gaps": 0}
    only = await store.coverage(db, ["FULL", "NONE"])
    assert [c.symbol for c in only] == ["FULL"]


# -- coverage kept as bars arrive ------------------------------------------------------------


async def test_coverage_is_kept_as_bars_arrive_and_counts_gaps_on_the_trading_calendar(
        db: Database) -> None:
    def bars(symbol: str, first: date, last: date) -> list[Bar]:
        return [Bar(symbol, d, 1, 1, 1, 1, 1) for d in trading_days(first, last)]

    assert await store.coverage(db) == []
    await store.save_bars(db, bars("GAP", date(2025, 1, 2), date(2025, 1, 10)), "synthetic")
    await store.save_bars(db, bars("GAP", date(2025, 1, 21), date(2025, 1, 31)), "synthetic")
    await store.save_bars(db, bars("ALL", date(2025, 1, 2), date(2025, 1, 31)), "synthetic")
    got = {c.symbol: c for c in await store.coverage(db)}
    # January 2025: 20 NYSE days (New Year, Carter's day of mourning on the 9th, MLK on the 20th);
    # GAP lacks the 13th to the 17th
    assert (got["ALL"].days_held, got["ALL"].gaps) == (len(trading_days(date(2025, 1, 2),
                                                                          date(2025, 1, 31))), 0)
    assert (got["GAP"].first_day, got["GAP"].last_day, got["GAP"].gaps) == (
        date(2025, 1, 2), date(2025, 1, 31), 5)
    await store.save_bars(db, bars("GAP", date(2025, 1, 13), date(2025, 1, 17)), "synthetic")
    assert [c.gaps for c in await store.coverage(db, ["GAP"])] == [0]
    assert [c.symbol for c in await store.coverage(db, limit=1, offset=1)] == ["GAP"]
    assert await store.symbols_held(db) == 2


def test_trading_day_count_matches_the_calendar() -> None:
    from jobs.prices.calendar import trading_day_count

    rng = random.Random(7)
    for _ in range(300):
        a = date(2019, 1, 1) + timedelta(days=rng.randrange(2500))
        b = a + timedelta(days=rng.randrange(-5, 900))
        assert trading_day_count(a, b) == len(trading_days(a, b)), (a, b)


def test_only_the_first_coverage_page_follows_the_live_stream(tmp_path) -> None:
    """A reader on page 2 of the coverage table keeps it: the stream renders the first page, so
    only that page swaps it in; the others say they are not live."""
    import asyncio

    from jobs.prices.providers import synthetic_bar
    from tests.inprocess import app_client
    from web.prices import COVERAGE_PAGE

    with app_client(tmp_path) as client:
        async def fill() -> None:
            db = Database(f"sqlite:///{tmp_path / 'web.db'}")
            try:
                bars = [synthetic_bar(f"S{i:04d}", date(2025, 1, 2)) for i in range(COVERAGE_PAGE + 5)]
                await store.save_bars(db, bars, "synthetic")
            finally:
                await db.dispose()
        asyncio.run(fill())
        first = client.get("/prices").text
        assert 'sse-swap="coverage"' in first and 'data-live="yes"' in first
        assert 'data-testid="coverage-not-live"' not in first
        second = client.get("/prices", params={"offset": COVERAGE_PAGE}).text
        assert 'sse-swap="coverage"' not in second and 'data-live="no"' in second
        assert f"symbols {COVERAGE_PAGE + 1}–{COVERAGE_PAGE + 5}; only the first page updates live" in second
        back = client.get("/prices", params={"offset": 0}, headers={"HX-Request": "true",
                                                                     "HX-Target": "coverage"}).text
        assert 'sse-swap="coverage"' in back  # paging back to the first page makes it live again
