"""The job page: Cancel from the browser stops a running job, and the page says so live."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from e2e.helpers import (
    api_submit,
    api_wait,
    assert_same_document,
    expect_badge,
    explained,
    mark,
    progress_done,
    trail,
    wait_sse_open,
)
from tests.stack import Stack


def test_cancel_button_stops_a_running_job(desk: Stack, page: Page) -> None:
    job_id = api_submit(desk.url, "diagnostics.sleep", steps=200, step_seconds=0.2)
    page.goto(f"{desk.url}/jobs/{job_id}")
    wait_sse_open(page)
    token = mark(page)
    detail = page.get_by_test_id("job-detail")
    progress = detail.get_by_test_id("progress-text")
    cancel, retry = detail.get_by_test_id("cancel-button"), detail.get_by_test_id("retry-button")

    expect_badge(page, desk.url, job_id, "running")
    expect(cancel).to_be_enabled()
    expect(retry).to_be_disabled()
    # it is really moving: the progress text changes by itself
    expect(progress).not_to_have_text("0/200")
    expect(progress).not_to_have_text(progress.inner_text())

    cancel.click()
    with explained(page, desk.url, job_id):
        expect_badge(page, desk.url, job_id, "cancelled")
        expect(detail).to_have_attribute("data-status", "cancelled")
        expect(cancel).to_be_disabled()
        expect(retry).to_be_enabled()

    job = api_wait(desk.url, job_id, {"cancelled"})
    stopped_at = progress.inner_text()
    assert progress_done(stopped_at) < 200
    seen = len(trail(page, "progress"))
    page.wait_for_timeout(1500)  # ~7 steps' worth: nothing may move any more
    expect(progress).to_have_text(stopped_at)
    assert len(trail(page, "progress")) == seen, trail(page, "progress")[seen - 1:]
    assert api_wait(desk.url, job_id, {"cancelled"})["progress"] == job["progress"]
    assert progress_done(stopped_at) == job["progress"]["done"]
    assert trail(page, "badge")[-1] == "cancelled"
    assert_same_document(page, token)
