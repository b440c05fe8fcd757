"""The download form on /prices: a good submit follows the job live; a bad one explains itself."""

from __future__ import annotations

import re

from playwright.sync_api import BrowserContext, Page, expect

from e2e.helpers import (
    api_cancel,
    api_job,
    api_submit,
    api_total,
    api_wait,
    assert_same_document,
    expect_badge,
    mark,
    trail,
    wait_sse_open,
)
from tests.stack import Stack

START, END = "2025-03-03", "2025-03-21"  # 15 trading days, all in the past


def test_download_from_the_form_is_followed_live_on_the_job_page_and_the_jobs_list(
        desk: Stack, context: BrowserContext) -> None:
    # /jobs is open before anything is submitted; it must learn of the new job by itself
    jobs_page = context.new_page()
    jobs_page.goto(f"{desk.url}/jobs")
    wait_sse_open(jobs_page)
    jobs_token = mark(jobs_page)
    rows = jobs_page.locator("#job-rows > tr")

    # the stack runs one job at a time: a blocker keeps the download pending until we let go
    blocker = api_submit(desk.url, "diagnostics.sleep", steps=150, step_seconds=0.1)
    api_wait(desk.url, blocker, {"running"})
    expect(rows.first).to_have_attribute("data-testid", f"job-row-{blocker}")
    expect(jobs_page.get_by_test_id(f"job-row-{blocker}").get_by_test_id("status-badge")) \
        .to_have_text("running")

    form_page = context.new_page()
    form_page.goto(f"{desk.url}/prices")
    form_page.get_by_test_id("symbols-input").fill("AAA,BBB,CCC")
    form_page.get_by_test_id("start-input").fill(START)
    form_page.get_by_test_id("end-input").fill(END)
    form_page.get_by_test_id("download-button").click()

    # HX-Redirect: htmx navigates to the new job's page
    form_page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    job_id = form_page.url.rsplit("/", 1)[1]
    job_page = form_page
    expect_badge(job_page, desk.url, job_id, "pending")
    wait_sse_open(job_page)
    token = mark(job_page)

    # the new row is at the top of the open /jobs list, still pending
    expect(rows.first).to_have_attribute("data-testid", f"job-row-{job_id}")
    new_row = jobs_page.get_by_test_id(f"job-row-{job_id}")
    expect(new_row.get_by_test_id("status-badge")).to_have_text("pending")

    # let the download run: pending -> downloading data (3 symbols x 400 ms) -> completed
    api_cancel(desk.url, blocker)
    expect_badge(job_page, desk.url, job_id, "downloading data")
    expect_badge(job_page, desk.url, job_id, "completed")
    expect(job_page.get_by_test_id("progress-text")).to_have_text("3/3")
    assert trail(job_page, "badge") == ["pending", "downloading data", "completed"]
    assert_same_document(job_page, token)

    job = api_wait(desk.url, job_id, {"completed"})
    assert job["params"]["symbols"] == ["AAA", "BBB", "CCC"]
    # the log shows each line once: the page's own lines and those the stream sent
    lines = job_page.get_by_test_id("log-line")
    expect(lines.last).to_contain_text("Finished: completed")  # the job's last line
    job = api_job(desk.url, job_id)
    expect(lines).to_have_count(len(job["log"]))
    ids = lines.evaluate_all("els => els.map(e => e.id)")
    assert len(set(ids)) == len(ids) == len(job["log"]), ids

    # meanwhile the /jobs list followed along, without a reload
    expect(new_row).to_have_attribute("data-status", "completed")
    expect(new_row.get_by_test_id("status-badge")).to_have_text("completed")
    expect(rows.first).to_have_attribute("data-testid", f"job-row-{job_id}")
    assert jobs_page.locator(f"#job-row-{job_id}").count() == 1
    assert_same_document(jobs_page, jobs_token)


def test_bad_input_is_explained_beside_each_field_and_creates_nothing(desk: Stack, page: Page) -> None:
    page.goto(f"{desk.url}/prices")
    before = api_total(desk.url)
    token = mark(page)

    page.get_by_test_id("symbols-input").fill("???")
    page.get_by_test_id("start-input").fill("2025-03-21")
    page.get_by_test_id("end-input").fill("2025-03-03")
    with page.expect_response(lambda r: r.url.endswith("/prices/download")) as answer:
        page.get_by_test_id("download-button").click()
    assert answer.value.status == 422

    form = page.get_by_test_id("download-form")
    symbols_error = form.get_by_test_id("symbols-error")
    end_error = form.get_by_test_id("end-error")
    expect(symbols_error).to_be_visible()
    expect(symbols_error).to_contain_text("'???' is not a ticker")
    expect(end_error).to_be_visible()
    expect(end_error).to_contain_text("start_date")
    # beside their fields: each message directly follows the field it is about
    assert form.locator("label:has([data-testid=symbols-input]) + [data-testid=symbols-error]").count() == 1
    assert form.locator("label:has([data-testid=end-input]) + [data-testid=end-error]").count() == 1
    expect(form.get_by_test_id("symbols-input")).to_have_attribute("aria-invalid", "true")
    # what the user typed is kept, and the page is still the form (no navigation, no reload)
    expect(form.get_by_test_id("symbols-input")).to_have_value("???")
    expect(form.get_by_test_id("end-input")).to_have_value("2025-03-03")
    assert page.url == f"{desk.url}/prices"
    assert_same_document(page, token)
    assert api_total(desk.url) == before

    # correcting the input submits normally
    form.get_by_test_id("symbols-input").fill("DDD")
    form.get_by_test_id("start-input").fill("2025-03-03")
    form.get_by_test_id("end-input").fill("2025-03-07")
    form.get_by_test_id("download-button").click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{32}$"))
    assert api_total(desk.url) == before + 1
    api_wait(desk.url, page.url.rsplit("/", 1)[1], {"completed"})


def test_recent_downloads_take_new_jobs_live(desk: Stack, page: Page) -> None:
    page.goto(f"{desk.url}/prices")
    wait_sse_open(page)
    token = mark(page)
    job_id = api_submit(desk.url, "prices.download", symbols=["RCNT"], start_date=START, end_date=END)
    recent = page.get_by_test_id("price-jobs")
    expect(recent.locator("tr").first).to_have_attribute("data-testid", f"job-row-{job_id}")
    expect(page.get_by_test_id(f"job-row-{job_id}").get_by_test_id("status-badge")) \
        .to_have_text("completed", timeout=30_000)
    assert_same_document(page, token)  # no reload: the row came and changed by SSE
