"""Every page lays out cleanly at a desktop width (1280 px) and an embedded panel's (800 px):
no sideways scrolling of the page, nothing sticking out of its card, long cells cut short with
their full text in a tooltip, and tables that scroll inside their card only when they must (never
at 1280 px). The pages are found from the navigation of `/` (so a page a new domain adds is
covered once it is in the nav), plus a simulation's and a download's job pages, each also
embedded (?embed=1). Screenshots of each go to the test's tmp dir."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Page

from e2e.helpers import api_cancel, api_submit, api_wait, wait_sse_open
from tests.stack import Stack

WIDTHS = (1280, 800)

# What the browser reports for one page: each finding a sentence naming the element.
CHECK_JS = "\n".join(line for line in (Path(__file__).parent / "layout_check.js").read_text()
                     .splitlines() if not line.startswith("//"))


def nav_paths(base: str) -> list[str]:
    """The pages the navigation of `/` links to."""
    page = httpx.get(base, timeout=10).text
    nav = re.search(r'<nav data-testid="nav">(.*?)</nav>', page, re.S)
    assert nav, "no navigation on /"
    paths = [urlparse(href).path or "/" for href in re.findall(r'href="([^"]+)"', nav.group(1))]
    assert {"/", "/jobs", "/prices", "/simulations"} <= set(paths), paths
    return list(dict.fromkeys(paths))


@pytest.fixture
def job_pages(desk: Stack) -> list[str]:
    """A download with a long list of symbols (cancelled: only its row matters) and a finished
    simulation, so the job tables and the simulation's panels have something to show. Their
    dates are ones no other browser test uses (a test that watches a download relies on it)."""
    symbols = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM", "V", "UNH", "XOM",
               "JNJ", "PG", "MA", "HD"]
    download = api_submit(desk.url, "prices.download", symbols=symbols, start_date="2022-01-03",
                          end_date="2022-12-30")
    api_cancel(desk.url, download)
    r = httpx.post(f"{desk.url}/simulate/trigger", timeout=10, json={
        "start_date": "2023-10-02", "end_date": "2023-10-06", "replace_existing": True})
    assert r.status_code == 200, r.text
    sim = r.json()["job_id"]
    api_wait(desk.url, sim, {"completed", "partial"}, timeout=90)
    return [f"/jobs/{sim}", f"/jobs/{download}"]


def test_every_page_lays_out_at_1280_and_800_px(desk: Stack, page: Page, job_pages: list[str],
                                               tmp_path: Path) -> None:
    paths = nav_paths(desk.url) + job_pages
    failures: list[str] = []
    shots = 0
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for path in paths:
            for embed in (False, True):
                url = f"{desk.url}{path}" + ("?embed=1" if embed else "")
                page.goto(url)
                wait_sse_open(page)
                page.wait_for_load_state("networkidle")
                name = path.strip("/").replace("/", "_") or "overview"
                label = f"{name}{'-embed' if embed else ''}-{width}"
                page.screenshot(path=str(tmp_path / f"{label}.png"), full_page=True)
                shots += 1
                found = page.evaluate(CHECK_JS, width >= 1280)
                assert found["checked"] > 5, f"{url}: nothing laid out?"
                failures += [f"{url} at {width}px: {p}" for p in found["problems"]]
    assert shots == len(paths) * 4
    assert not failures, "\n".join(failures[:40])
