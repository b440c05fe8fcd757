"""A desk's JSON catalog (MARKETDESK_CONTRACTS_CATALOG=file) against the real stack: a live
refresh that fails falls back to the cached catalog and says so (catalog_ok false,
catalog_error, the hint on the page) without losing the table, and a good refresh clears it.
With nothing cached, the failure is the build's, and the snapshot stays missing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx

from jobs.contracts.lake import symbol_dir
from tests.stack import Stack

CATALOG = {"exchanges": {"DCE": {"m": [
    {"symbol": "DCE.m2501", "open_date": "2024-01-16", "expiry": "2025-01-15"},
    {"symbol": "DCE.m2505", "open_date": "2024-05-16", "expiry": "2025-05-15"},
    {"symbol": "DCE.m2509", "open_date": None, "expiry": "2025-09-15"},
], "y": [{"symbol": "DCE.y2501", "open_date": "2024-01-16", "expiry": "2025-01-15"}]}}}


def build(stack: Stack, var: str, refresh: bool) -> dict:
    r = httpx.post(f"{stack.url}/api/contracts/build",
                   json={"exchange": "DCE", "var": var, "refresh_catalog": refresh}, timeout=10)
    assert r.status_code == 202, r.text
    return stack.wait(r.json()["job_id"], timeout=60)


def snapshot(stack: Stack, var: str = "m") -> dict:
    r = httpx.get(f"{stack.url}/api/contracts", params={"exchange": "DCE", "var": var}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_failing_catalog_falls_back_to_the_cached_one(make_stack: Callable[..., Stack],
                                                         tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    lake = tmp_path / "lake"
    (symbol_dir(lake / "v1" / "ticks", "DCE.m2501") / "date=2024-01-16").mkdir(parents=True)
    stack = make_stack(env={"MARKETDESK_CONTRACTS_CATALOG": "file",
                            "MARKETDESK_CONTRACTS_CATALOG_FILE": str(catalog),
                            "MARKETDESK_LAKE_DIR": str(lake)})
    assert build(stack, "m", refresh=True)["status"] == "completed"
    good = snapshot(stack)
    assert good["catalog_ok"] is True and good["catalog_source"] == "file"
    statuses = {c["symbol"]: c["status"] for c in good["contracts"]}
    assert statuses == {"DCE.m2501": "incomplete", "DCE.m2505": "not-downloaded", "DCE.m2509": "unknown"}

    catalog.write_text("{ this is not json")  # the desk's file breaks
    job = build(stack, "m", refresh=True)
    assert job["status"] == "completed"
    assert any("catalog refresh failed" in w for w in job["warnings"])
    fell_back = snapshot(stack)
    assert fell_back["catalog_ok"] is False and "not valid JSON" in fell_back["catalog_error"]
    assert fell_back["catalog_cached_at"] == good["catalog_cached_at"]  # the cached catalog
    assert [c["symbol"] for c in fell_back["contracts"]] == [c["symbol"] for c in good["contracts"]]
    assert "not valid JSON" in fell_back["last_refresh_error"]
    page = httpx.get(f"{stack.url}/contracts", params={"exchange": "DCE", "var": "m"}, timeout=10).text
    assert "last refresh failed: catalog:" in page and 'data-testid="row-DCE.m2501"' in page

    # a build that does not refresh the catalog cannot clear a failed refresh
    assert build(stack, "m", refresh=False)["status"] == "completed"
    assert snapshot(stack)["last_refresh_error"] is not None

    # nothing cached for y: the failure is the build's, and no snapshot appears
    failed = build(stack, "y", refresh=True)
    assert failed["status"] == "failed" and "not valid JSON" in failed["error"]
    missing = snapshot(stack, "y")
    assert missing["ok"] is False and "not valid JSON" in missing["last_refresh_error"]

    catalog.write_text(json.dumps(CATALOG))  # mended
    assert build(stack, "m", refresh=True)["status"] == "completed"
    mended = snapshot(stack)
    assert mended["catalog_ok"] is True and mended["last_refresh_error"] is None
    assert mended["catalog_cached_at"] > good["catalog_cached_at"]
    page = httpx.get(f"{stack.url}/contracts", params={"exchange": "DCE", "var": "m"}, timeout=10).text
    assert "last refresh failed" not in page
