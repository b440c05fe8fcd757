"""The `prices.download` job through the real stack: statuses, progress, only-missing days,
download order, rate limits, Alpha Vantage's ways of failing (through a loopback fake), cancel.
"""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from jobs.prices.calendar import trading_days
from tests.fakes.alphavantage import DAILY_CAP, INVALID_KEY, NOTE, OK, FakeAlphaVantage
from tests.stack import TERMINAL, Stack, sse_events, statuses_of

JAN = ("2025-01-02", "2025-01-31")  # 20 trading days (Jan 9 and Jan 20 closed)
JAN_DAYS = 20
AV_RANGE = ("2024-03-01", "2024-03-28")  # long ago: Alpha Vantage is asked for outputsize=full
AV_DAYS = len(trading_days(date(2024, 3, 1), date(2024, 3, 28)))
SYNTHETIC_LATENCY_MS = 500
AV_MIN_INTERVAL = 0.3  # well above the natural gap between requests (~0.03-0.15 s), to see pacing


# -- helpers (also used by test_prices_web) ----------------------------------------------------


def stem(length: int = 5) -> str:
    """A random ticker stem, so tests sharing a stack never touch each other's symbols."""
    return "Q" + "".join(random.choices(string.ascii_uppercase, k=length - 1))


def tickers(*suffixes: str) -> list[str]:
    base = stem()
    return [base + s for s in suffixes]


def download(stack: Stack, symbols: list[str] | str, start: str, end: str,
             provider: str | None = None) -> str:
    body: dict[str, Any] = {"symbols": symbols, "start_date": start, "end_date": end}
    if provider:
        body["provider"] = provider
    r = httpx.post(f"{stack.url}/api/prices/download", json=body, timeout=10)
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["status"] == "pending" and set(answer) == {"job_id", "status"}, answer
    return str(answer["job_id"])


def history(stack: Stack, job_id: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every state of the job from its creation to its end.

    ``stack.follow`` starts from the state current when it connects, so a job the worker
    picked up in the meantime would show no ``pending``; resuming the stream from its start
    (Last-Event-ID 0-0) replays the job's own events, creation included, then follows live.
    """
    states: list[dict[str, Any]] = []
    url = f"{stack.url}/events?topic=job:{job_id}&format=json"
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", url, headers={"Last-Event-ID": "0-0"},
                      timeout=httpx.Timeout(5, read=timeout)) as resp:
        for event in sse_events(resp):
            if event.get("event") == "job":
                states.append(json.loads(event["data"]))
                if states[-1]["status"] in TERMINAL:
                    return states
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"job {job_id} did not end in {timeout}s: {states[-1:]}\n{stack.log()}")


def phases(states: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """Distinct (done, total, phase) steps while downloading."""
    out: list[tuple[int, int, str]] = []
    for s in states:
        p = s["progress"]
        step = (p["done"], p["total"], p["phase"])
        if s["status"] == "downloading_data" and p["phase"] and (not out or out[-1] != step):
            out.append(step)
    return out


def coverage(stack: Stack, symbols: list[str]) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{stack.url}/api/prices/coverage", params={"symbols": ",".join(symbols)},
                  timeout=10)
    assert r.status_code == 200, r.text
    return {row["symbol"]: row for row in r.json()["coverage"]}


def stored_lines(job: dict[str, Any]) -> list[str]:
    """The symbols in the order the job stored them (its "X: stored n of m" log lines)."""
    return [line["message"].split(":")[0] for line in job["log"]
            if ": stored " in line["message"]]


# -- the synthetic provider on the shared stack ------------------------------------------------


def test_job_goes_pending_downloading_completed_with_progress_per_symbol(stack: Stack) -> None:
    symbols = tickers("C", "A", "B")
    job_id = download(stack, symbols, *JAN)
    states = history(stack, job_id)

    assert statuses_of(states) == ["pending", "downloading_data", "completed"]
    a, b, c = sorted(symbols)  # nobody holds anything: equal gains, so by name
    assert phases(states) == [
        (0, 3, f"Downloading {a} (1/3)"),
        (1, 3, f"Downloading {b} (2/3)"),
        (2, 3, f"Downloading {c} (3/3)"),
        (3, 3, "Downloaded 3/3 symbols"),
    ]
    job = stack.job(job_id)
    assert job["warnings"] == [] and job["error"] is None
    assert job["result"]["downloaded"] == [a, b, c]
    assert job["result"]["bars_saved"] == 3 * JAN_DAYS
    assert job["result"]["trading_days"] == JAN_DAYS
    held = coverage(stack, symbols)
    assert {s: (r["first_day"], r["last_day"], r["days_held"], r["gaps"]) for s, r in held.items()} \
        == {s: ("2025-01-02", "2025-01-31", JAN_DAYS, 0) for s in symbols}


def test_only_missing_days_are_fetched_and_a_repeat_fetches_nothing(stack: Stack) -> None:
    symbols = tickers("A", "B")
    first = stack.wait(download(stack, symbols, *JAN))
    assert first["status"] == "completed" and first["result"]["bars_saved"] == 2 * JAN_DAYS

    # wider on both sides: Dec 16-31 2024 adds 11 trading days (Dec 25 closed), Feb 3-14 adds 10
    wider = stack.wait(download(stack, symbols, "2024-12-16", "2025-02-14"))
    assert wider["status"] == "completed", wider
    assert wider["result"]["bars_saved"] == 2 * 21
    assert wider["result"]["trading_days"] == JAN_DAYS + 21
    messages = [line["message"] for line in wider["log"]]
    for symbol in symbols:
        assert f"{symbol}: stored 21 of 21 missing days" in messages
    assert {s: r["days_held"] for s, r in coverage(stack, symbols).items()} \
        == dict.fromkeys(symbols, JAN_DAYS + 21)

    again_id = download(stack, symbols, "2024-12-16", "2025-02-14")
    states = stack.follow(again_id)
    assert states[-1]["status"] == "completed"
    again = stack.job(again_id)
    assert again["result"]["bars_saved"] == 0 and again["result"]["downloaded"] == []
    assert again["progress"]["phase"] == "All 2 symbols already stored"
    assert not any(p.startswith("Downloading") for _, _, p in phases(states))
    assert stored_lines(again) == []


def test_symbols_that_complete_most_days_are_downloaded_first(stack: Stack) -> None:
    # Feb 3-14 2025: 10 trading days. LATE already holds Feb 4-14 (lacks 1 day), MID holds
    # Feb 10-14 (lacks 5), ZNEW holds nothing (lacks 10). Only ZNEW's download completes days
    # at first (Feb 10-14, which the others hold); then MID completes Feb 4-7; then LATE Feb 3.
    late, mid, znew = tickers("A", "M", "Z")
    assert stack.wait(download(stack, [late], "2025-02-04", "2025-02-14"))["status"] == "completed"
    assert stack.wait(download(stack, [mid], "2025-02-10", "2025-02-14"))["status"] == "completed"

    job_id = download(stack, [late, mid, znew], "2025-02-03", "2025-02-14")
    states = history(stack, job_id)
    assert states[-1]["status"] == "completed"
    assert [p for _, _, p in phases(states)][:3] == [
        f"Downloading {znew} (1/3)", f"Downloading {mid} (2/3)", f"Downloading {late} (3/3)"]
    job = stack.job(job_id)
    assert stored_lines(job) == [znew, mid, late]
    messages = [line["message"] for line in job["log"]]
    assert f"{znew}: stored 10 of 10 missing days" in messages
    assert f"{mid}: stored 5 of 5 missing days" in messages
    assert f"{late}: stored 1 of 1 missing days" in messages


# -- synthetic rate limit (per worker process: its own stack) ----------------------------------


def test_synthetic_rate_limit_gives_partial_and_keeps_what_was_fetched(make_stack: Any) -> None:
    limited = make_stack(env={"MARKETDESK_SYNTHETIC_RATE_LIMIT_PER_MIN": "2"})
    symbols = tickers("A", "B", "C", "D")
    job = limited.wait(download(limited, symbols, *JAN))

    assert job["status"] == "partial", job
    a, b, c, d = symbols
    assert "Rate limit reached - downloaded 2/4 symbols" in job["warnings"]
    assert job["progress"] == {"done": 2, "total": 4, "percent": 50,
                               "phase": "Rate limit reached - downloaded 2/4 symbols"}
    assert f"Incomplete: {c} ({JAN_DAYS} of {JAN_DAYS} days missing), " \
           f"{d} ({JAN_DAYS} of {JAN_DAYS} days missing)" in job["warnings"]
    assert job["result"]["downloaded"] == [a, b]
    assert job["result"]["not_attempted"] == [c, d]
    # items (jobs.items): the two not asked for are skipped, not failed
    assert [i["item"] for i in job["result"]["skipped"]] == [c, d]
    assert (job["result"]["items"], job["result"]["failed"]) == (2, [])
    assert job["result"]["rate_limited"] is True
    assert job["result"]["bars_saved"] == 2 * JAN_DAYS
    assert {s: r["days_held"] for s, r in coverage(limited, symbols).items()} \
        == {a: JAN_DAYS, b: JAN_DAYS}
    assert any(line["level"] == "warning" and "rate limit of 2 requests per minute" in line["message"]
               for line in job["log"])


# -- a stack with slow synthetic answers and Alpha Vantage behind a loopback fake ---------------


@pytest.fixture(scope="module")
def av_server() -> Iterator[FakeAlphaVantage]:
    with FakeAlphaVantage(symbols=()) as fake:
        yield fake


@pytest.fixture(scope="module")
def slow_stack(database: str, av_server: FakeAlphaVantage,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "MARKETDESK_ALPHAVANTAGE_URL": av_server.url,
        "MARKETDESK_ALPHAVANTAGE_API_KEY": av_server.api_key or "",
        "MARKETDESK_ALPHAVANTAGE_MIN_INTERVAL_SECONDS": str(AV_MIN_INTERVAL),
        "MARKETDESK_SYNTHETIC_LATENCY_MS": str(SYNTHETIC_LATENCY_MS),
    }
    with Stack(tmp_path_factory.mktemp("slow-stack"), env=env, database=database) as s:
        yield s


@pytest.fixture
def fake(av_server: FakeAlphaVantage) -> Iterator[FakeAlphaVantage]:
    av_server.reset()
    av_server.full_is_premium = False
    yield av_server
    av_server.reset()
    av_server.full_is_premium = False


def av_tickers(fake: FakeAlphaVantage, *suffixes: str) -> list[str]:
    symbols = tickers(*suffixes)
    for symbol in symbols:
        fake.add_symbol(symbol)
    return symbols


def requested(fake: FakeAlphaVantage) -> list[str]:
    return [r.symbol or "" for r in fake.requests]


def test_cancel_while_downloading_stops_within_a_second_and_keeps_fetched_bars(
        slow_stack: Stack) -> None:
    symbols = tickers("A", "B", "C", "D", "E")
    job_id = download(slow_stack, symbols, *JAN)  # 5 × 500 ms
    deadline = time.monotonic() + 10
    while True:
        job = slow_stack.job(job_id)
        if job["status"] == "downloading_data" and job["progress"]["done"] >= 2:
            break
        assert time.monotonic() < deadline and job["status"] not in TERMINAL, job
        time.sleep(0.02)
    asked = time.monotonic()
    r = httpx.post(f"{slow_stack.url}/api/jobs/{job_id}/cancel", timeout=10)
    assert r.status_code == 200, r.text
    job = slow_stack.wait(job_id, timeout=5)
    took = time.monotonic() - asked
    assert job["status"] == "cancelled", job
    assert took < 1.0, f"cancel took {took:.2f}s"

    held = coverage(slow_stack, symbols)
    a, b, _, d, e = symbols
    assert held[a]["days_held"] == JAN_DAYS and held[b]["days_held"] == JAN_DAYS
    assert d not in held and e not in held
    time.sleep(SYNTHETIC_LATENCY_MS / 1000 + 0.2)  # nothing more arrives after the cancel
    assert coverage(slow_stack, symbols) == held


def test_av_fetches_only_symbols_with_missing_days(slow_stack: Stack, fake: FakeAlphaVantage
                                                  ) -> None:
    a, b = av_tickers(fake, "A", "B")
    job = slow_stack.wait(download(slow_stack, [a], *AV_RANGE, provider="alphavantage"))
    assert job["status"] == "completed" and job["result"]["bars_saved"] == AV_DAYS
    assert requested(fake) == [a]

    fake.reset()
    job = slow_stack.wait(download(slow_stack, [a, b], *AV_RANGE, provider="alphavantage"))
    assert job["status"] == "completed" and job["result"]["bars_saved"] == AV_DAYS
    assert requested(fake) == [b]

    fake.reset()
    job = slow_stack.wait(download(slow_stack, [a, b], *AV_RANGE, provider="alphavantage"))
    assert job["status"] == "completed"
    assert job["progress"]["phase"] == "All 2 symbols already stored"
    assert requested(fake) == []


def test_av_stored_bars_are_the_providers(slow_stack: Stack, fake: FakeAlphaVantage) -> None:
    (a,) = av_tickers(fake, "A")
    job = slow_stack.wait(download(slow_stack, [a], *AV_RANGE, provider="alphavantage"))
    assert job["status"] == "completed"
    served = {d for d in fake.series(a) if AV_RANGE[0] <= d <= AV_RANGE[1]}
    row = coverage(slow_stack, [a])[a]
    assert (row["first_day"], row["last_day"], row["days_held"]) == (min(served), max(served),
                                                                     len(served))
    assert [(r.symbol, r.outputsize, r.params["apikey"]) for r in fake.requests] \
        == [(a, "full", fake.api_key)]


@pytest.mark.parametrize(("body", "ok_before"), [(NOTE, 1), (DAILY_CAP, 2)], ids=["note", "daily-cap"])
def test_av_rate_limit_mid_download_stops_and_keeps_what_was_fetched(
        slow_stack: Stack, fake: FakeAlphaVantage, body: dict[str, str], ok_before: int) -> None:
    symbols = av_tickers(fake, "A", "B", "C")
    fake.script(*([OK] * ok_before), body)
    job = slow_stack.wait(download(slow_stack, symbols, *AV_RANGE, provider="alphavantage"))

    assert job["status"] == "partial", job
    assert f"Rate limit reached - downloaded {ok_before}/3 symbols" in job["warnings"]
    assert job["progress"]["phase"] == f"Rate limit reached - downloaded {ok_before}/3 symbols"
    fetched, rest = symbols[:ok_before], symbols[ok_before:]
    assert requested(fake) == symbols[:ok_before + 1]  # nothing asked after the refusal
    assert job["result"]["downloaded"] == fetched
    assert job["result"]["not_attempted"] == rest
    incomplete = next(w for w in job["warnings"] if w.startswith("Incomplete: "))
    assert all(s in incomplete for s in rest) and not any(s in incomplete for s in fetched)
    assert {s: r["days_held"] for s, r in coverage(slow_stack, symbols).items()} \
        == dict.fromkeys(fetched, AV_DAYS)
    provider_message = next(iter(body.values()))
    assert any(line["level"] == "warning" and provider_message in line["message"]
               for line in job["log"])


def test_av_rate_limit_before_anything_fails_the_job(slow_stack: Stack, fake: FakeAlphaVantage
                                                    ) -> None:
    symbols = av_tickers(fake, "A", "B")
    fake.script(NOTE)
    job = slow_stack.wait(download(slow_stack, symbols, *AV_RANGE, provider="alphavantage"))
    assert job["status"] == "failed", job
    assert job["error"] == "No price data downloaded. rate limit reached before any symbol was downloaded"
    assert "Rate limit reached - downloaded 0/2 symbols" in job["warnings"]
    assert coverage(slow_stack, symbols) == {}


def test_av_premium_full_falls_back_to_compact_and_warns(slow_stack: Stack, fake: FakeAlphaVantage
                                                        ) -> None:
    fake.full_is_premium = True
    a, b = av_tickers(fake, "A", "B")
    today = datetime.now(UTC).date()
    recent = trading_days(date(today.year - 1, 1, 1), today)
    start = recent[-98]  # more than 95 trading days back: full is asked; compact (100) covers it
    job = slow_stack.wait(download(slow_stack, [a, b], start.isoformat(), today.isoformat(),
                                   provider="alphavantage"))

    assert job["status"] == "completed", job
    assert [(r.symbol, r.outputsize) for r in fake.requests] \
        == [(a, "full"), (a, "compact"), (b, "compact")]
    for symbol in (a, b):
        assert ("Alpha Vantage: outputsize=full is a premium feature; fell back to compact "
                f"(last 100 days) for {symbol}") in job["warnings"]
    assert {s: r["days_held"] for s, r in coverage(slow_stack, [a, b]).items()} == {a: 98, b: 98}


def test_av_error_for_one_symbol_fails_only_that_one(slow_stack: Stack, fake: FakeAlphaVantage
                                                    ) -> None:
    good_a, good_b = av_tickers(fake, "A", "C")
    bad = good_a[:-1] + "B"  # the fake does not know it: "Invalid API call"
    job = slow_stack.wait(download(slow_stack, [good_a, bad, good_b], *AV_RANGE,
                                   provider="alphavantage"))

    assert job["status"] == "partial", job
    assert requested(fake) == [good_a, bad, good_b]  # went on after the failure
    assert job["result"]["downloaded"] == [good_a, good_b]
    assert [f["item"] for f in job["result"]["failed"]] == [bad]  # the items rule (jobs.items)
    assert any(w.startswith(f"{bad}: Alpha Vantage rejected {bad}: Invalid API call")
               for w in job["warnings"])
    assert f"Incomplete: {bad} ({AV_DAYS} of {AV_DAYS} days missing)" in job["warnings"]
    assert set(coverage(slow_stack, [good_a, bad, good_b])) == {good_a, good_b}


def test_av_more_than_half_of_the_symbols_failing_fails_the_download(
        slow_stack: Stack, fake: FakeAlphaVantage) -> None:
    """The per-item rule every job over items follows (jobs.items): one stored, two rejected →
    failed, with each failure in the result and the error, and the one stored kept."""
    (good,) = av_tickers(fake, "A")
    bad = [good[:-1] + "B", good[:-1] + "C"]  # unknown to the fake: "Invalid API call"
    job = slow_stack.wait(download(slow_stack, [good, *bad], *AV_RANGE, provider="alphavantage"))

    assert job["status"] == "failed", job
    assert [f["item"] for f in job["result"]["failed"]] == bad
    assert job["result"]["succeeded"] == [good]
    assert job["error"].startswith("2 of 3 items failed: ")
    assert all(f"{s}: Alpha Vantage rejected {s}: Invalid API call" in job["error"] for s in bad)
    assert set(coverage(slow_stack, [good, *bad])) == {good}  # what was fetched is kept


def test_av_every_request_rejected_fails_with_the_error(slow_stack: Stack, fake: FakeAlphaVantage
                                                       ) -> None:
    a, b = av_tickers(fake, "A", "B")
    fake.always(INVALID_KEY)
    job = slow_stack.wait(download(slow_stack, [a, b], *AV_RANGE, provider="alphavantage"))

    assert job["status"] == "failed", job
    assert job["error"].startswith("No price data downloaded. ")
    for symbol in (a, b):
        assert f"{symbol}: Alpha Vantage rejected {symbol}: the parameter apikey is invalid" \
            in job["error"]
    assert fake.api_key not in job["error"]
    assert coverage(slow_stack, [a, b]) == {}
    assert any(line["level"] == "error" and line["message"].startswith("Finished: failed")
               for line in job["log"])


def test_av_503_is_retried_and_the_download_completes(slow_stack: Stack, fake: FakeAlphaVantage
                                                      ) -> None:
    (a,) = av_tickers(fake, "A")
    fake.script(503, symbol=a)
    job = slow_stack.wait(download(slow_stack, [a], *AV_RANGE, provider="alphavantage"))
    assert job["status"] == "completed", job
    assert job["warnings"] == []
    assert requested(fake) == [a, a]
    assert coverage(slow_stack, [a])[a]["days_held"] == AV_DAYS


def paced_download(stack: Stack, fake: FakeAlphaVantage) -> list[float]:
    symbols = av_tickers(fake, "A", "B", "C", "D")
    job = stack.wait(download(stack, symbols, *AV_RANGE, provider="alphavantage"))
    assert job["status"] == "completed", job
    times = [r.monotonic for r in fake.requests]
    assert requested(fake) == symbols
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_av_requests_arrive_at_most_one_per_interval(slow_stack: Stack, fake: FakeAlphaVantage
                                                     ) -> None:
    gaps = paced_download(slow_stack, fake)
    # unpaced, these requests arrive ~0.03-0.15 s apart; Alpha Vantage counts arrivals
    assert min(gaps) >= AV_MIN_INTERVAL, gaps


def test_av_jobs_running_together_share_the_pace_of_their_key(slow_stack: Stack,
                                                               fake: FakeAlphaVantage) -> None:
    """The limit is the key's, whoever sends: two downloads at once must not double the rate."""
    first, second = av_tickers(fake, "A", "B", "C"), av_tickers(fake, "D", "E", "F")
    jobs = [download(slow_stack, symbols, *AV_RANGE, provider="alphavantage")
            for symbols in (first, second)]
    done = [slow_stack.wait(job_id) for job_id in jobs]
    assert [job["status"] for job in done] == ["completed", "completed"], done
    # they ran at the same time: each started before the other finished
    assert done[0]["started_at"] < done[1]["finished_at"] and done[1]["started_at"] < done[0]["finished_at"]
    times = sorted(r.monotonic for r in fake.requests)
    assert len(times) == 6
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= AV_MIN_INTERVAL, gaps
