"""The jobs list, filtered by kind: jobs created meanwhile appear at the top without a reload,
jobs of other kinds do not, and a row already shown follows its job to the end."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from e2e.helpers import api_submit, api_wait, assert_same_document, mark, wait_sse_open
from tests.stack import Stack


def test_a_list_filtered_by_kind_takes_new_jobs_of_that_kind_live(desk: Stack, page: Page) -> None:
    page.goto(f"{desk.url}/jobs?kind=diagnostics.sleep")
    wait_sse_open(page)
    token = mark(page)
    rows = page.locator("#job-rows > tr")
    before = rows.count()

    other = api_submit(desk.url, "diagnostics.noop")
    mine = api_submit(desk.url, "diagnostics.sleep", steps=3, step_seconds=0.2)
    row = page.get_by_test_id(f"job-row-{mine}")
    expect(row).to_be_visible()
    expect(rows.first).to_have_attribute("id", f"job-row-{mine}")
    expect(row).to_have_attribute("data-status", "completed", timeout=15_000)
    api_wait(desk.url, other, {"completed"})
    expect(rows).to_have_count(before + 1)
    expect(page.get_by_test_id(f"job-row-{other}")).to_have_count(0)
    assert_same_document(page, token)
