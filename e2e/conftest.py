"""Browser fixtures (Playwright, Debian's Chromium) and the stack the browser tests share.

Playwright's sync API and pytest-asyncio in one process
-------------------------------------------------------
Between two sync calls, Playwright leaves its own event loop registered as the thread's
*running* loop (``asyncio._set_running_loop``), because its dispatcher greenlet is suspended
inside ``loop.run_until_complete`` and shares the thread. An async test that runs afterwards
in the same session (``uv run pytest e2e tests``, or any order pytest picks) then fails with
"Runner.run() cannot be called from a running event loop", and pytest-asyncio's session loop
cannot even be closed. So Playwright's loop is registered only while a browser test (or the
browser fixture itself) runs: the session fixture unregisters it after launching, and the
function-scoped ``browser`` fixture registers it for the test and unregisters it after. Every
fixture that drives Playwright depends on ``browser``, so it is set up after and torn down
before that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from e2e.helpers import RECORDER_JS, cancel_unfinished
from e2e.outer_sites import OuterSite
from e2e.split_stack import SplitStack
from tests.stack import Stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
TIMEOUT_MS = 15_000

expect.set_options(timeout=TIMEOUT_MS)


@contextmanager
def _playwright_loop(pw: Playwright) -> Iterator[None]:
    """Register Playwright's loop as the running one for the block (see the module doc)."""
    loop: asyncio.AbstractEventLoop = pw._loop  # type: ignore[attr-defined]
    asyncio._set_running_loop(loop)
    try:
        yield
    finally:
        asyncio._set_running_loop(None)


@dataclass
class _Chromium:
    playwright: Playwright
    browser: Browser


@pytest.fixture(scope="session")
def _chromium() -> Iterator[_Chromium]:
    manager = sync_playwright()
    pw = manager.start()
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    except BaseException:
        pw.stop()
        raise
    asyncio._set_running_loop(None)
    try:
        yield _Chromium(pw, browser)
    finally:
        with _playwright_loop(pw):
            try:
                browser.close()
            finally:
                pw.stop()


@pytest.fixture
def browser(_chromium: _Chromium) -> Iterator[Browser]:
    with _playwright_loop(_chromium.playwright):
        yield _chromium.browser


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.add_init_script(RECORDER_JS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


# -- the stacks -------------------------------------------------------------------------------
@dataclass
class Sites:
    allowed: OuterSite  # listed in MARKETDESK_EMBED_ORIGINS
    foreign: OuterSite  # not listed


@pytest.fixture(scope="session")
def sites() -> Iterator[Sites]:
    allowed, foreign = OuterSite().start(), OuterSite().start()
    try:
        yield Sites(allowed, foreign)
    finally:
        allowed.stop()
        foreign.stop()


def start_desk(data_dir: Path, sites: Sites) -> Stack:
    """One `marketdesk serve` for the browser tests whose settings fit together.

    - synthetic latency 400 ms a symbol, so a download stays in downloading_data a while;
    - one job at a time (``--max-jobs 1``), so a test can hold a job in pending behind another;
    - the allowed outer site may embed the pages.
    """
    env = {
        "MARKETDESK_SYNTHETIC_LATENCY_MS": "400",
        "MARKETDESK_EMBED_ORIGINS": f"'self' {sites.allowed.origin}",
        "MARKETDESK_HEARTBEAT_SECONDS": "0.5",
        "MARKETDESK_RECONCILE_SECONDS": "0.5",
    }
    return Stack(data_dir, env=env, max_jobs=1).start()


class Launcher:
    """Starts, in the background and at once, the stacks the selected tests will use, so their
    start-up (mostly Python imports in child processes) overlaps Chromium's launch and the
    tests that run first. ``get`` waits for one; everything started is stopped at the end."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="e2e-start")
        self.futures: dict[str, Future[Stack | SplitStack]] = {}

    def launch(self, name: str, start: Callable[[], Stack | SplitStack]) -> None:
        self.futures[name] = self.pool.submit(start)

    def get(self, name: str) -> Stack | SplitStack:
        return self.futures[name].result(timeout=180)

    def stop_all(self) -> None:
        for future in self.futures.values():
            try:
                stack = future.result(timeout=180)
            except Exception:
                continue  # it failed to start, and cleaned up after itself
            stack.stop()
        self.pool.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _launcher(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    here = Path(__file__).parent
    wanted = {name for item in request.session.items if here in item.path.parents
              for name in getattr(item, "fixturenames", ())}
    launcher = Launcher()
    try:
        if "desk" in wanted:
            sites = request.getfixturevalue("sites")
            desk_dir = tmp_path_factory.mktemp("e2e-desk")
            launcher.launch("desk", lambda: start_desk(desk_dir, sites))
        if "split" in wanted:
            split_dir = tmp_path_factory.mktemp("e2e-split")
            launcher.launch("split", lambda: SplitStack(split_dir).start())
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture
def desk(_launcher: Launcher) -> Iterator[Stack]:
    """The shared `marketdesk serve` (see start_desk), quiet before and after each test:
    nothing left pending or running."""
    stack = _launcher.get("desk")
    assert isinstance(stack, Stack)
    cancel_unfinished(stack.url)
    yield stack
    cancel_unfinished(stack.url)


@pytest.fixture
def split(_launcher: Launcher) -> SplitStack:
    """Redis, a worker and the web as separate processes (see e2e/split_stack.py)."""
    stack = _launcher.get("split")
    assert isinstance(stack, SplitStack)
    return stack
