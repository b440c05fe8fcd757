"""Embedding: an allowed site frames the job panel (live, with a working Cancel); others cannot
frame it, and their pages cannot change jobs.

The stack is http://127.0.0.1:<port>; the outer sites are http://localhost:<port> (see
e2e/outer_sites.py): another origin and another site. Only ``sites.allowed`` is listed in
MARKETDESK_EMBED_ORIGINS.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

from playwright.sync_api import ConsoleMessage, Frame, Page, expect

from e2e.conftest import Sites
from e2e.helpers import (
    api_cancel,
    api_submit,
    api_total,
    api_wait,
    assert_same_document,
    expect_badge,
    explained,
    mark,
    trail,
    wait_sse_open,
)
from tests.stack import Stack


def frame_named(page: Page, name: str) -> Frame:
    """The frame of the outer page's iframe called ``name`` (found by its element: a frame
    whose content was refused keeps no name of its own)."""
    frame = page.locator(f"iframe[name={name}]").element_handle().content_frame()
    assert frame is not None, name
    return frame


def test_allowed_site_frames_the_live_panel_and_cancel_works_inside(
        desk: Stack, sites: Sites, page: Page) -> None:
    # one job at a time on this stack: a gate holds both jobs pending until the frames are up,
    # then the short one runs, then the long one
    gate = api_submit(desk.url, "diagnostics.sleep", steps=300, step_seconds=0.1)
    api_wait(desk.url, gate, {"running"})
    short = api_submit(desk.url, "diagnostics.sleep", steps=8, step_seconds=0.25)
    long = api_submit(desk.url, "diagnostics.sleep", steps=200, step_seconds=0.2)
    srcs = [f"{desk.url}/jobs/{short}?embed=1", f"{desk.url}/jobs/{long}?embed=1"]
    page.goto(f"{sites.allowed.origin}/frame?{urlencode({'src': srcs}, doseq=True)}")
    first, second = frame_named(page, "f0"), frame_named(page, "f1")
    for frame in (first, second):
        assert frame.url.startswith(desk.url), frame.url
        expect(frame.get_by_test_id("job-detail")).to_be_visible()
        # the panel, not the whole page: no navigation chrome
        expect(frame.get_by_test_id("nav")).to_have_count(0)
        expect(frame.locator("body")).to_have_class("embed")
        wait_sse_open(frame)
    outer_token = mark(page)
    tokens = [mark(first), mark(second)]
    for frame, job_id in ((first, short), (second, long)):
        expect_badge(frame, desk.url, job_id, "pending")
    api_cancel(desk.url, gate)

    # live updates reach the framed panel: the short job runs to completed
    expect_badge(first, desk.url, short, "completed")
    expect(first.get_by_test_id("progress-text")).to_have_text("8/8")
    assert trail(first, "badge") == ["pending", "running", "completed"]

    # then the long one starts; Cancel inside the frame (a same-origin request there) stops it
    detail = second.get_by_test_id("job-detail")
    expect_badge(second, desk.url, long, "running")
    with page.expect_response(re.compile(rf"/jobs/{long}/cancel")) as answer:
        detail.get_by_test_id("cancel-button").click()
    assert answer.value.status == 200
    assert answer.value.request.header_value("sec-fetch-site") == "same-origin"
    with explained(second, desk.url, long):
        expect_badge(second, desk.url, long, "cancelled")
        expect(detail.get_by_test_id("cancel-button")).to_be_disabled()
        expect(detail.get_by_test_id("retry-button")).to_be_enabled()
    api_wait(desk.url, long, {"cancelled"})

    assert_same_document(page, outer_token)
    for frame, token in zip((first, second), tokens, strict=True):
        assert_same_document(frame, token)
        expect(frame.get_by_test_id("nav")).to_have_count(0)


def test_other_sites_cannot_frame_the_panel(desk: Stack, sites: Sites, page: Page) -> None:
    job_id = api_submit(desk.url, "diagnostics.noop")
    api_wait(desk.url, job_id, {"completed"})
    src = f"{desk.url}/jobs/{job_id}?embed=1"
    refusals: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if "frame-ancestors" in msg.text:
            refusals.append(msg.text)

    page.on("console", on_console)
    # the same panel under the allowed site renders (control for the check below)
    page.goto(f"{sites.allowed.origin}/frame?{urlencode({'src': src})}")
    expect(frame_named(page, "f0").get_by_test_id("job-detail")).to_be_visible()
    assert refusals == []

    with page.expect_response(lambda r: r.url == src) as framed:
        page.goto(f"{sites.foreign.origin}/frame?{urlencode({'src': src})}")
    # the server answered, with a policy that does not name this site ...
    policy = framed.value.headers["content-security-policy"]
    assert f"frame-ancestors 'self' {sites.allowed.origin}" in policy, policy
    assert sites.foreign.origin not in policy
    # ... so the browser refuses to show it
    frame = frame_named(page, "f0")
    for _ in range(100):  # console events are delivered while Playwright waits
        if refusals:
            break
        page.wait_for_timeout(100)
    assert refusals, "no frame-ancestors refusal reported"
    assert not frame.url.startswith(desk.url), frame.url
    assert frame.locator("[data-testid=job-detail]").count() == 0


def test_other_sites_cannot_change_jobs(desk: Stack, sites: Sites, page: Page) -> None:
    body = json.dumps({"kind": "diagnostics.noop", "params": {}})
    api = f"{desk.url}/api/jobs"
    # a "simple" cross-site request: no preflight, so it reaches the server; only the
    # server's cross-site guard stands between it and a new job
    post = """async ([url, body]) => {
        await fetch(url, {method: 'POST', mode: 'no-cors', body,
                          headers: {'Content-Type': 'text/plain'}});
    }"""

    # control: from the allowed site the very same request is accepted
    page.goto(f"{sites.allowed.origin}/")
    before = api_total(desk.url)
    with page.expect_response(api) as answer:
        page.evaluate(post, [api, body])
    assert answer.value.status == 202
    assert api_total(desk.url) == before + 1

    page.goto(f"{sites.foreign.origin}/")
    before = api_total(desk.url)
    with page.expect_response(api) as answer:
        page.evaluate(post, [api, body])
    assert answer.value.status == 403
    assert api_total(desk.url) == before

    # a plain HTML form posting to the download form's endpoint from the foreign site
    fields = {"action": f"{desk.url}/prices/download", "symbols": "EEE",
              "start_date": "2025-03-03", "end_date": "2025-03-07"}
    page.goto(f"{sites.foreign.origin}/post?{urlencode(fields)}")
    with page.expect_navigation() as nav:
        page.locator("#go").click()
    response = nav.value
    assert response is not None and response.status == 403
    expect(page.locator("body")).to_contain_text("Cross-site request refused")
    assert api_total(desk.url) == before
