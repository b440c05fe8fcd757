"""Price downloads from the outside: the JSON API's validation, coverage, the /prices page and its
htmx form, and the `marketdesk prices download` command, against the real stack.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from tests.prices.test_download_job import JAN, JAN_DAYS, coverage, download, stem, tickers
from tests.stack import ROOT, Stack, sse_events

KIND = "prices.download"
HTMX = {"HX-Request": "true", "Sec-Fetch-Site": "same-origin"}


class Tagged(HTMLParser):
    """Text and attributes of every element carrying a data-testid."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.attrs: dict[str, dict[str, str | None]] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs).get("data-testid")
        if found:
            self.text.setdefault(found, "")
            self.attrs[found] = dict(attrs)
        if tag not in ("input", "br", "meta", "link", "img"):
            self._open.append((tag, found))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, found in self._open:
            if found:
                self.text[found] += data


def jobs_total(stack: Stack) -> int:
    r = httpx.get(f"{stack.url}/api/jobs", params={"kind": KIND, "limit": 1}, timeout=10)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


# -- JSON API validation ------------------------------------------------------------------------

GOOD = {"symbols": ["AAPL"], "start_date": "2025-01-02", "end_date": "2025-01-31"}
TOMORROW = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()

BAD_BODIES: list[tuple[str, dict[str, Any], str, str]] = [
    ("no-symbols", {"start_date": "2025-01-02", "end_date": "2025-01-31"}, "symbols", "required"),
    ("no-start", {"symbols": ["AAPL"], "end_date": "2025-01-31"}, "start_date", "required"),
    ("no-end", {"symbols": ["AAPL"], "start_date": "2025-01-02"}, "end_date", "required"),
    ("bad-ticker", {**GOOD, "symbols": ["AAPL", "bad!"]}, "symbols",
     "'bad!' is not a ticker: use 1-10 letters or digits"),
    ("long-ticker", {**GOOD, "symbols": "ABCDEFGHIJK"}, "symbols", "is not a ticker"),
    ("no-tickers", {**GOOD, "symbols": []}, "symbols", "give at least one ticker"),
    ("too-many", {**GOOD, "symbols": [f"T{i}" for i in range(101)]}, "symbols",
     "at most 100 symbols per download, got 101"),
    ("symbols-not-list", {**GOOD, "symbols": 5}, "symbols", "list"),
    ("slashes", {**GOOD, "start_date": "2025/01/02"}, "start_date", "use YYYY-MM-DD"),
    ("day-first", {**GOOD, "end_date": "31-01-2025"}, "end_date", "use YYYY-MM-DD"),
    ("timestamp", {**GOOD, "start_date": 1735776000}, "start_date", "use YYYY-MM-DD"),
    ("no-such-day", {**GOOD, "end_date": "2025-02-30"}, "end_date", "use YYYY-MM-DD"),
    ("start-after-end", {**GOOD, "start_date": "2025-02-01"}, "end_date",
     "must be on or after start_date (2025-02-01)"),
    ("future", {**GOOD, "start_date": TOMORROW, "end_date": TOMORROW}, "start_date",
     "in the future"),
    ("too-early", {**GOOD, "start_date": "1980-01-02"}, "start_date", "on or after 1990-01-01"),
    ("provider", {**GOOD, "provider": "yahoo"}, "provider",
     "unknown provider 'yahoo'; allowed: synthetic, alphavantage"),
    ("unknown-field", {**GOOD, "interval": "1h"}, "interval", "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("body", "field", "message"), [c[1:] for c in BAD_BODIES],
                         ids=[c[0] for c in BAD_BODIES])
def test_api_refuses_bad_input_naming_the_field_and_creates_no_job(
        stack: Stack, body: dict[str, Any], field: str, message: str) -> None:
    before = jobs_total(stack)
    r = httpx.post(f"{stack.url}/api/prices/download", json=body, timeout=10)
    assert r.status_code == 400, r.text
    answer = r.json()
    matching = [e for e in answer["errors"] if e["field"] == field]
    assert matching, answer
    assert message.lower() in matching[0]["message"].lower(), answer
    assert f"{field}: " in answer["detail"]
    assert jobs_total(stack) == before


def test_api_refuses_a_body_that_is_not_json(stack: Stack) -> None:
    before = jobs_total(stack)
    r = httpx.post(f"{stack.url}/api/prices/download", content=b"symbols=AAPL",
                   headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400, r.text
    assert jobs_total(stack) == before


def test_api_accepts_comma_separated_lowercase_symbols(stack: Stack) -> None:
    a, b = tickers("A", "B")
    job_id = download(stack, f"{a.lower()}, {b}", *JAN)
    job = stack.wait(job_id)
    assert job["status"] == "completed"
    assert job["params"]["symbols"] == [a, b]


# -- coverage ---------------------------------------------------------------------------------


def test_coverage_reports_days_held_and_gaps_between_disjoint_downloads(stack: Stack) -> None:
    gappy, whole = tickers("G", "W")
    assert stack.wait(download(stack, [gappy], "2025-01-02", "2025-01-10"))["status"] == "completed"
    assert stack.wait(download(stack, [gappy], "2025-01-21", "2025-01-31"))["status"] == "completed"
    assert stack.wait(download(stack, [whole], *JAN))["status"] == "completed"

    rows = coverage(stack, [gappy, whole])
    # Jan 2-10: 6 trading days (Jan 9 closed); Jan 21-31: 9; between them Jan 13-17 (Jan 20 is
    # Martin Luther King day): 5 days not held
    assert rows[gappy] == {"symbol": gappy, "first_day": "2025-01-02", "last_day": "2025-01-31",
                           "days_held": 15, "gaps": 5}
    assert rows[whole] == {"symbol": whole, "first_day": "2025-01-02", "last_day": "2025-01-31",
                           "days_held": JAN_DAYS, "gaps": 0}

    # filling the gap downloads exactly those 5 days
    job = stack.wait(download(stack, [gappy], *JAN))
    assert job["result"]["bars_saved"] == 5
    assert coverage(stack, [gappy])[gappy]["gaps"] == 0

    everything = httpx.get(f"{stack.url}/api/prices/coverage", timeout=10).json()["coverage"]
    assert {gappy, whole} <= {row["symbol"] for row in everything}


def test_coverage_refuses_a_bad_symbol_filter(stack: Stack) -> None:
    r = httpx.get(f"{stack.url}/api/prices/coverage", params={"symbols": "AAPL,bad!"}, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == "symbols"
    assert "'bad!' is not a ticker" in r.json()["detail"]


def test_prices_page_shows_coverage_rows(stack: Stack) -> None:
    gappy, whole = tickers("G", "W")
    assert stack.wait(download(stack, [gappy], "2025-01-02", "2025-01-10"))["status"] == "completed"
    assert stack.wait(download(stack, [gappy], "2025-01-21", "2025-01-31"))["status"] == "completed"
    assert stack.wait(download(stack, [whole], *JAN))["status"] == "completed"

    for path in ("/prices", "/prices?embed=1"):
        r = httpx.get(f"{stack.url}{path}", timeout=10)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        page = Tagged(r.text)
        assert "download-form" in page.text
        for symbol, held, gaps in ((gappy, 15, 5), (whole, JAN_DAYS, 0)):
            row = re.search(rf'<tr data-testid="coverage-{symbol}">(.*?)</tr>', r.text, re.S)
            assert row, f"no coverage row for {symbol} on {path}"
            cells = Tagged(row.group(0)).text
            assert (cells["days-held"].strip(), cells["gaps"].strip()) == (str(held), str(gaps))
            assert "2025-01-02" in row.group(1) and "2025-01-31" in row.group(1)


def test_prices_page_stream_pushes_coverage_as_a_download_stores_bars(stack: Stack) -> None:
    (symbol,) = tickers("L")
    url = f"{stack.url}/events?topic=prices"
    with httpx.stream("GET", url, timeout=httpx.Timeout(5, read=15)) as resp:
        events = sse_events(resp)
        first = next(e for e in events if e.get("event") == "coverage")  # the state on connect
        assert f"coverage-{symbol}" not in first["data"]
        job_id = download(stack, [symbol], *JAN)
        for event in events:
            if event.get("event") == "coverage" and f'data-testid="coverage-{symbol}"' in event["data"]:
                break
    row = re.search(rf'<tr data-testid="coverage-{symbol}">.*?</tr>', event["data"], re.S)
    assert row and Tagged(row.group(0)).text["days-held"].strip() == str(JAN_DAYS)
    assert stack.wait(job_id)["status"] == "completed"


# -- the htmx form ------------------------------------------------------------------------------


def post_form(stack: Stack, data: dict[str, str], embed: bool = False) -> httpx.Response:
    path = "/prices/download" + ("?embed=1" if embed else "")
    return httpx.post(f"{stack.url}{path}", data=data, headers=HTMX, timeout=10)


FORM_ERRORS: list[tuple[str, dict[str, str], dict[str, str]]] = [
    ("bad-ticker", {"symbols": "AAPL, bad!"}, {"symbols-error": "'bad!' is not a ticker"}),
    ("no-symbols", {"symbols": ""}, {"symbols-error": "give at least one ticker"}),
    ("start-after-end", {"start_date": "2025-02-01"},
     {"end-error": "must be on or after start_date (2025-02-01)"}),
    ("bad-start", {"start_date": "02/01/2025"}, {"start-error": "use YYYY-MM-DD"}),
    ("provider", {"provider": "yahoo"}, {"provider-error": "allowed: synthetic, alphavantage"}),
    ("two-at-once", {"symbols": "???", "start_date": "2025-03-21", "end_date": "2025-03-03"},
     {"symbols-error": "'???' is not a ticker", "end-error": "on or after start_date (2025-03-21)"}),
]
FIELDS = ["symbols-input", "start-input", "end-input", "provider-select", "download-button"]
BESIDE = {"symbols-error": 0, "start-error": 1, "end-error": 2, "provider-error": 3}


@pytest.mark.parametrize(("change", "expected"), [c[1:] for c in FORM_ERRORS],
                         ids=[c[0] for c in FORM_ERRORS])
@pytest.mark.parametrize("embed", [False, True], ids=["page", "embed"])
def test_form_shows_inline_errors_beside_the_fields_and_creates_no_job(
        stack: Stack, change: dict[str, str], expected: dict[str, str], embed: bool) -> None:
    before = jobs_total(stack)
    data = {"symbols": "AAPL", "start_date": "2025-01-02", "end_date": "2025-01-31",
            "provider": "synthetic", **change}
    r = post_form(stack, data, embed)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "hx-redirect" not in r.headers
    form = Tagged(r.text)
    assert sorted(k for k in form.text if k.endswith("-error")) == sorted(expected)
    for testid, message in expected.items():
        assert message in form.text[testid]
        # right after its own field, before the next one
        at = r.text.index(f'data-testid="{testid}"')
        field = BESIDE[testid]
        assert r.text.index(f'data-testid="{FIELDS[field]}"') < at \
            < r.text.index(f'data-testid="{FIELDS[field + 1]}"')
    assert form.attrs["symbols-input"]["aria-invalid"] == ("true" if "symbols-error" in expected
                                                            else "false")
    # what was typed is kept, and the form posts back where it came from
    assert form.attrs["symbols-input"]["value"] == data["symbols"]
    assert form.attrs["start-input"]["value"] == data["start_date"]
    assert form.attrs["end-input"]["value"] == data["end_date"]
    assert form.attrs["download-form"]["hx-post"] == "/prices/download" + ("?embed=1" if embed else "")
    assert jobs_total(stack) == before


@pytest.mark.parametrize("embed", [False, True], ids=["page", "embed"])
def test_form_with_good_input_redirects_to_the_new_job(stack: Stack, embed: bool) -> None:
    a, b = tickers("A", "B")
    before = jobs_total(stack)
    r = post_form(stack, {"symbols": f"{a}, {b.lower()}", "start_date": JAN[0], "end_date": JAN[1],
                          "provider": "synthetic"}, embed)
    assert r.status_code == 200, r.text  # litestar ClientRedirect: 200 + HX-Redirect
    target = r.headers["hx-redirect"]
    match = re.fullmatch(r"/jobs/([0-9a-f]{32})" + (r"\?embed=1" if embed else ""), target)
    assert match, target
    assert jobs_total(stack) == before + 1
    job = stack.wait(match.group(1))
    assert job["kind"] == KIND and job["status"] == "completed"
    assert job["params"]["symbols"] == [a, b]
    page = httpx.get(f"{stack.url}{target}", timeout=10)
    assert page.status_code == 200


# -- the command line -----------------------------------------------------------------------


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "web.cli", "prices", "download", *args,
                           "--url", stack.url], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_cli_downloads_and_follows_the_job_to_completion(stack: Stack) -> None:
    a, b = tickers("A", "B")
    done = run_cli(stack, "--symbols", f"{a},{b}", "--start", JAN[0], "--end", JAN[1])
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"job ([0-9a-f]{32}) is pending", done.stdout)
    assert match, done.stdout
    job_id = match.group(1)
    assert f"job {job_id} completed" in done.stdout
    job = stack.job(job_id)
    assert job["status"] == "completed" and job["params"]["symbols"] == [a, b]
    assert {s: r["days_held"] for s, r in coverage(stack, [a, b]).items()} \
        == {a: JAN_DAYS, b: JAN_DAYS}


def test_cli_with_a_bad_symbol_exits_non_zero_with_the_servers_message(stack: Stack) -> None:
    before = jobs_total(stack)
    done = run_cli(stack, "--symbols", f"{stem()},bad!", "--start", JAN[0], "--end", JAN[1])
    assert done.returncode != 0
    assert "refused (400)" in done.stderr
    assert "symbols: 'bad!' is not a ticker" in done.stderr
    assert jobs_total(stack) == before
