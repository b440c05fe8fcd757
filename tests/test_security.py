"""Security headers and the cross-site guard: a page on another site cannot start or cancel jobs."""

from __future__ import annotations

import httpx
import pytest

from tests.stack import Stack

EMBEDDER = "https://tools.example.com"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, database):
    env = {"MARKETDESK_EMBED_ORIGINS": f"'self' {EMBEDDER}"}
    with Stack(tmp_path_factory.mktemp("guarded"), workers=0, env=env, database=database) as s:
        yield s


@pytest.mark.parametrize("path", ["/", "/jobs", "/prices", "/jobs?embed=1", "/api/jobs"])
def test_every_response_carries_the_csp(guarded: Stack, path: str) -> None:
    r = httpx.get(guarded.url + path)
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert f"frame-ancestors 'self' {EMBEDDER}" in csp
    assert "unsafe-eval" not in csp and "unsafe-inline" not in csp


def test_default_frame_ancestors_is_self(stack: Stack) -> None:
    assert "frame-ancestors 'self'" in httpx.get(stack.url + "/").headers["content-security-policy"]


def test_embed_mode_has_no_navigation_chrome(guarded: Stack) -> None:
    assert 'data-testid="nav"' in httpx.get(guarded.url + "/jobs").text
    assert 'data-testid="nav"' not in httpx.get(guarded.url + "/jobs?embed=1").text
    # links inside an embedded panel stay embedded
    job_id = guarded.submit("diagnostics.noop")
    assert f'/jobs/{job_id}?embed=1' in httpx.get(guarded.url + "/jobs?embed=1").text


def _count(s: Stack) -> int:
    return int(httpx.get(f"{s.url}/api/jobs").json()["total"])


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.localhost.example"},
    {"Origin": "https://evil.example"},  # an older browser without Sec-Fetch-*
])
def test_cross_site_posts_are_refused(guarded: Stack, headers: dict[str, str]) -> None:
    before = _count(guarded)
    r = httpx.post(f"{guarded.url}/api/jobs", json={"kind": "diagnostics.noop"}, headers=headers)
    assert r.status_code == 403
    assert "Cross-site request refused" in r.json()["detail"]
    r = httpx.post(f"{guarded.url}/prices/download", data={"symbols": "AAPL"}, headers=headers)
    assert r.status_code == 403
    assert _count(guarded) == before


@pytest.mark.parametrize("headers", [
    {},  # curl, scripts
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "cross-site", "Origin": EMBEDDER},  # the allowed embedder
    {"Sec-Fetch-Site": "none"},  # typed by the user
])
def test_same_origin_tools_and_allowed_embedders_pass(guarded: Stack, headers: dict[str, str]) -> None:
    r = httpx.post(f"{guarded.url}/api/jobs", json={"kind": "diagnostics.noop"}, headers=headers)
    assert r.status_code == 202


def test_same_origin_by_origin_header_passes(guarded: Stack) -> None:
    r = httpx.post(f"{guarded.url}/api/jobs", json={"kind": "diagnostics.noop"},
                   headers={"Origin": guarded.url})
    assert r.status_code == 202


def test_openapi_schema_lists_the_api(stack: Stack) -> None:
    paths = httpx.get(f"{stack.url}/schema/openapi.json").json()["paths"]
    for path in ("/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/cancel",
                 "/api/jobs/{job_id}/retry", "/api/prices/download", "/api/prices/coverage",
                 "/healthz"):
        assert path in paths, path
