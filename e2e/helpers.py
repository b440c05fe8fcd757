"""What the browser tests share: a page-side recorder, waits on the live stream, API helpers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from playwright.sync_api import Frame, Page, expect

# Injected into every document (and frame) before its own scripts run. It records, without
# polling, each distinct text the job page's status badge and progress text take (a
# MutationObserver sees every SSE swap), counts SSE (re)connections, and collects CSP
# violations. A reload would start a fresh `__md`, which is how the tests prove they saw
# live updates and not a new page.
RECORDER_JS = """
(() => {
  if (window.__md) return;
  const md = window.__md = {sseOpen: 0, sseError: 0, messages: 0, csp: [], trail: {}, marker: null};
  document.addEventListener('htmx:sseOpen', () => { md.sseOpen += 1; });
  document.addEventListener('htmx:sseError', () => { md.sseError += 1; });
  document.addEventListener('htmx:sseMessage', () => { md.messages += 1; });
  document.addEventListener('securitypolicyviolation', (e) => {
    md.csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || ''));
  });
  const watched = {
    badge: '[data-testid=job-detail] [data-testid=status-badge]',
    progress: '[data-testid=job-detail] [data-testid=progress-text]',
  };
  const sample = () => {
    for (const [key, selector] of Object.entries(watched)) {
      const el = document.querySelector(selector);
      if (!el) continue;
      const text = el.textContent.trim();
      const seen = md.trail[key] || (md.trail[key] = []);
      if (seen[seen.length - 1] !== text) seen.push(text);
    }
  };
  const start = () => {
    sample();
    new MutationObserver(sample).observe(document.documentElement,
      {subtree: true, childList: true, characterData: true, attributes: false});
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
"""

Target = Page | Frame


def wait_sse_open(target: Target, at_least: int = 1, timeout: float = 15_000) -> None:
    """Until the page's EventSource has opened (``at_least`` times, counting reconnections)."""
    target.wait_for_function(f"() => window.__md && window.__md.sseOpen >= {at_least}",
                             timeout=timeout)


def trail(target: Target, key: str) -> list[str]:
    """The distinct successive texts the recorder saw for ``key`` (badge, progress)."""
    return list(target.evaluate(f"() => (window.__md.trail[{key!r}] || []).slice()"))


def mark(target: Target) -> str:
    """Tag this document; :func:`assert_same_document` fails if it was reloaded since."""
    token = f"m{time.monotonic_ns()}"
    target.evaluate(f"() => {{ window.__md.marker = {token!r}; }}")
    return token


def assert_same_document(target: Target, token: str) -> None:
    got = target.evaluate("() => window.__md && window.__md.marker")
    assert got == token, f"the page was reloaded or navigated away (marker {got!r} != {token!r})"


@contextmanager
def explained(target: Target, base_url: str, job_id: str) -> Iterator[None]:
    """Re-raise a failed check with what the job page showed along the way and what the server
    holds: a page stuck on an older state than the server's means an event was lost or arrived
    out of order."""
    try:
        yield
    except AssertionError as exc:
        job = api_job(base_url, job_id)
        shown = trail(target, "badge")
        finished = {"completed", "partial", "failed", "cancelled"}
        regressed = any(a in finished and b not in finished
                        for a, b in zip(shown, shown[1:], strict=False))
        raise AssertionError(
            f"{str(exc).splitlines()[0]}\nthe page showed the statuses {shown}; the server has "
            f"{job['status']!r} (cancel requested at {job.get('cancel_requested_at')})"
            + ("\nan older state arrived after the final one: job events out of order"
               if regressed else "")
        ) from exc


def expect_badge(target: Target, base_url: str, job_id: str, text: str,
                 timeout: float = 15_000) -> None:
    """The job page's status badge comes to read ``text`` (see :func:`explained`)."""
    with explained(target, base_url, job_id):
        badge = target.get_by_test_id("job-detail").get_by_test_id("status-badge")
        expect(badge).to_have_text(text, timeout=timeout)


def csp_violations(target: Target) -> list[str]:
    return list(target.evaluate("() => window.__md.csp.slice()"))


def progress_done(text: str) -> int:
    """'12/40' -> 12."""
    done, _, _ = text.partition("/")
    return int(done)


# -- the JSON API (the tests' view of the server's truth) --------------------------------------
def api_submit(base_url: str, kind: str, **params: Any) -> str:
    r = httpx.post(f"{base_url}/api/jobs", json={"kind": kind, "params": params}, timeout=10)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def api_job(base_url: str, job_id: str) -> dict[str, Any]:
    r = httpx.get(f"{base_url}/api/jobs/{job_id}", timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def api_total(base_url: str, **filters: str) -> int:
    r = httpx.get(f"{base_url}/api/jobs", params={"limit": 1, **filters}, timeout=10)
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def api_wait(base_url: str, job_id: str, statuses: set[str], timeout: float = 15.0,
             min_done: int = 0) -> dict[str, Any]:
    """Until the job is in one of ``statuses`` with at least ``min_done`` progress steps."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = api_job(base_url, job_id)
        if job["status"] in statuses and (job["progress"]["done"] or 0) >= min_done:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not in {statuses} (done >= {min_done}) "
                         f"after {timeout}s: {job.get('status')} {job.get('progress')}")


def api_cancel(base_url: str, job_id: str) -> dict[str, Any]:
    r = httpx.post(f"{base_url}/api/jobs/{job_id}/cancel", timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


UNFINISHED = ("pending", "downloading_data", "running")


def cancel_unfinished(base_url: str) -> None:
    """Cancel whatever a test left running, so the next one starts from a quiet stack."""
    for status in UNFINISHED:
        r = httpx.get(f"{base_url}/api/jobs", params={"status": status, "limit": 200}, timeout=10)
        for job in r.json().get("jobs", []):
            httpx.post(f"{base_url}/api/jobs/{job['id']}/cancel", timeout=10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if not any(api_total(base_url, status=s) for s in UNFINISHED):
            return
        time.sleep(0.05)
