"""The pages work under their Content-Security-Policy (htmx without eval or inline script),
and the overview's numbers follow the jobs live."""

from __future__ import annotations

from playwright.sync_api import ConsoleMessage, Page, expect

from e2e.helpers import (
    api_submit,
    api_total,
    api_wait,
    assert_same_document,
    csp_violations,
    mark,
    wait_sse_open,
)
from tests.stack import Stack


def collect_errors(page: Page) -> list[str]:
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(f"console: {msg.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    return errors


def test_overview_counts_follow_jobs_live_without_csp_violations(desk: Stack, page: Page) -> None:
    errors = collect_errors(page)
    with page.expect_response(f"{desk.url}/") as answer:
        page.goto(f"{desk.url}/")
    policy = answer.value.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy, policy
    wait_sse_open(page)
    token = mark(page)

    completed = page.get_by_test_id("count-completed")
    running = page.get_by_test_id("count-running")
    done_before = api_total(desk.url, status="completed")
    expect(completed).to_have_text(str(done_before))
    expect(running).to_have_text("0")

    job_id = api_submit(desk.url, "diagnostics.sleep", steps=8, step_seconds=0.25)
    entry = page.get_by_test_id(f"running-{job_id}")
    expect(entry).to_be_visible()
    expect(running).to_have_text("1")
    expect(completed).to_have_text(str(done_before + 1))
    expect(running).to_have_text("0")
    expect(entry).to_have_count(0)
    api_wait(desk.url, job_id, {"completed"})
    assert_same_document(page, token)

    assert csp_violations(page) == []
    assert errors == []

    # htmx runs with eval off, and the policy is enforced here (so "no violations" above means
    # something): an inline script is refused, and the recorder sees the refusal
    assert page.evaluate("() => htmx.config.allowEval") is False
    ran = page.evaluate("""() => {
        const s = document.createElement('script');
        s.textContent = 'window.__inline = true';
        document.head.appendChild(s);
        return window.__inline === true;
    }""")
    assert ran is False
    page.wait_for_function("() => window.__md.csp.length > 0")
    assert any("script-src" in v for v in csp_violations(page)), csp_violations(page)


def test_every_page_runs_htmx_without_csp_violations(desk: Stack, page: Page) -> None:
    errors = collect_errors(page)
    job_id = api_submit(desk.url, "diagnostics.noop")
    api_wait(desk.url, job_id, {"completed"})
    for path in ["/", "/jobs", "/prices", f"/jobs/{job_id}", f"/jobs/{job_id}?embed=1", "/jobs?embed=1"]:
        page.goto(f"{desk.url}{path}")
        # htmx and its SSE extension loaded and connected: scripts ran under the policy
        wait_sse_open(page)
        assert page.evaluate("() => typeof htmx === 'object' && htmx.version.startsWith('2.')")
        assert csp_violations(page) == [], path
    # an htmx request too: the jobs filter swaps the table in place
    page.goto(f"{desk.url}/jobs")
    wait_sse_open(page)
    token = mark(page)
    with page.expect_response(lambda r: "/jobs?" in r.url and r.request.headers.get("hx-request") == "true"):
        page.get_by_test_id("filter-id").press_sequentially(job_id[:10])
    expect(page.locator("#job-rows > tr")).to_have_count(1)
    expect(page.get_by_test_id(f"job-row-{job_id}")).to_be_visible()
    assert_same_document(page, token)
    assert csp_violations(page) == []
    assert errors == []
