"""An open job page survives a restart of the web process: it reconnects by itself and shows
what the worker did meanwhile. Web, worker and Redis run as separate processes here."""

from __future__ import annotations

import signal

from playwright.sync_api import Page, expect

from e2e.helpers import (
    api_job,
    api_submit,
    api_wait,
    assert_same_document,
    expect_badge,
    mark,
    progress_done,
    trail,
    wait_sse_open,
)
from e2e.split_stack import SplitStack

STEPS, STEP_SECONDS = 40, 0.25


def test_job_page_reconnects_after_the_web_process_restarts(split: SplitStack, page: Page) -> None:
    job_id = api_submit(split.url, "diagnostics.sleep", steps=STEPS, step_seconds=STEP_SECONDS)
    page.goto(f"{split.url}/jobs/{job_id}")
    wait_sse_open(page)
    token = mark(page)
    detail = page.get_by_test_id("job-detail")
    progress = detail.get_by_test_id("progress-text")
    expect_badge(page, split.url, job_id, "running")
    expect(progress).not_to_have_text("0/40")  # updates arrive before the restart

    # a graceful stop: uvicorn exits 0 or re-raises the SIGTERM it handled; never our SIGKILL
    assert split.stop_web() in (0, -signal.SIGTERM), split.log("web.log")
    shown_when_web_died = progress_done(progress.inner_text())
    seen_before = len(trail(page, "progress"))
    page.wait_for_timeout(1000)  # the worker carries on; nothing reaches the page
    expect(progress).to_have_text(f"{shown_when_web_died}/{STEPS}")

    split.start_web()
    # the worker moved the job on while the web was away
    assert api_job(split.url, job_id)["progress"]["done"] > shown_when_web_died

    # no reload: the page's EventSource reconnects and catches up, then follows to the end
    wait_sse_open(page, at_least=2, timeout=30_000)
    expect_badge(page, split.url, job_id, "completed", timeout=30_000)
    expect(progress).to_have_text(f"{STEPS}/{STEPS}")
    after = trail(page, "progress")[seen_before:]
    assert after and all(progress_done(p) > shown_when_web_died for p in after), after
    assert trail(page, "badge")[-1] == "completed"
    assert_same_document(page, token)
    assert api_wait(split.url, job_id, {"completed"})["progress"]["done"] == STEPS
