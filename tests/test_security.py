"""Security headers and the cross-site guard: a page on another site cannot start or cancel jobs."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from tests.inprocess import BASE_URL, app_client

EMBEDDER = "https://tools.example.com"
Client = TestClient[Any]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, database):
    with app_client(tmp_path_factory.mktemp("guarded"), database,
                    embed_origins=f"'self' {EMBEDDER}") as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/jobs", "/prices", "/jobs?embed=1", "/api/jobs"])
def test_every_response_carries_the_csp(guarded: Client, path: str) -> None:
    r = guarded.get(path)
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert f"frame-ancestors 'self' {EMBEDDER}" in csp
    assert "unsafe-eval" not in csp and "unsafe-inline" not in csp


def test_default_frame_ancestors_is_self(web: Client) -> None:
    assert "frame-ancestors 'self'" in web.get("/").headers["content-security-policy"]


def test_embed_mode_has_no_navigation_chrome(guarded: Client) -> None:
    assert 'data-testid="nav"' in guarded.get("/jobs").text
    assert 'data-testid="nav"' not in guarded.get("/jobs?embed=1").text
    # links inside an embedded panel stay embedded
    job_id = guarded.post("/api/jobs", json={"kind": "diagnostics.noop"}).json()["job_id"]
    assert f'/jobs/{job_id}?embed=1' in guarded.get("/jobs?embed=1").text


def _count(client: Client) -> int:
    return int(client.get("/api/jobs").json()["total"])


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.localhost.example"},
    {"Origin": "https://evil.example"},  # an older browser without Sec-Fetch-*
])
def test_cross_site_posts_are_refused(guarded: Client, headers: dict[str, str]) -> None:
    before = _count(guarded)
    r = guarded.post("/api/jobs", json={"kind": "diagnostics.noop"}, headers=headers)
    assert r.status_code == 403
    assert "Cross-site request refused" in r.json()["detail"]
    r = guarded.post("/prices/download", data={"symbols": "AAPL"}, headers=headers)
    assert r.status_code == 403
    assert _count(guarded) == before


@pytest.mark.parametrize("headers", [
    {},  # curl, scripts
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "cross-site", "Origin": EMBEDDER},  # the allowed embedder
    {"Sec-Fetch-Site": "none"},  # typed by the user
])
def test_same_origin_tools_and_allowed_embedders_pass(guarded: Client, headers: dict[str, str]) -> None:
    r = guarded.post("/api/jobs", json={"kind": "diagnostics.noop"}, headers=headers)
    assert r.status_code == 202


def test_same_origin_by_origin_header_passes(guarded: Client) -> None:
    r = guarded.post("/api/jobs", json={"kind": "diagnostics.noop"},
                   headers={"Origin": BASE_URL})
    assert r.status_code == 202


def test_openapi_schema_lists_the_api(web: Client) -> None:
    paths = web.get("/schema/openapi.json").json()["paths"]
    for path in ("/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/cancel",
                 "/api/jobs/{job_id}/retry", "/api/prices/download", "/api/prices/coverage",
                 "/healthz"):
        assert path in paths, path
