"""mode=cache with a fresh snapshot answers from the database alone: a spy on the catalog, the
lake and the scanner proves none of them is touched (the request path does no slow work), and
the same spy sees them all on mode=compute (so it can fail). The app runs in process against
a real Redis and the real database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from jobs import store
from jobs.contracts import catalog, lake
from jobs.contracts.build import build_snapshot
from jobs.contracts.demo import write_demo_lake
from jobs.contracts.lake import ticks_root
from jobs.contracts.settings import contracts_settings
from jobs.db import Database
from jobs.redis_embedded import EmbeddedRedis
from jobs.settings import Settings, settings_of
from tests.inprocess import BASE_URL

Q = {"exchange": "SHFE", "var": "cu"}


@pytest.fixture
def lake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MARKETDESK_LAKE_DIR", str(tmp_path / "lake"))
    monkeypatch.setenv("MARKETDESK_CONTRACTS_HISTORY_YEARS", "1")
    settings_of.cache_clear()
    yield tmp_path / "lake"
    settings_of.cache_clear()


def spy_on(monkeypatch: pytest.MonkeyPatch, lake_dir: Path) -> list[str]:
    """Record every call into the catalog, the lake scanner and the file system under the lake."""
    calls: list[str] = []
    under = str(lake_dir)

    def wrap(owner: Any, name: str, is_async: bool = False) -> None:
        real = getattr(owner, name)
        if is_async:
            async def spy_async(*a: Any, **k: Any) -> Any:
                calls.append(name)
                return await real(*a, **k)
            monkeypatch.setattr(owner, name, spy_async)
        else:
            def spy(*a: Any, **k: Any) -> Any:
                calls.append(name)
                return real(*a, **k)
            monkeypatch.setattr(owner, name, spy)

    wrap(catalog, "get_catalog", is_async=True)
    wrap(catalog.RulesProvider, "fetch", is_async=True)
    wrap(catalog, "rules_contracts")
    wrap(lake, "scan_lake", is_async=True)
    wrap(lake, "scan_symbol")
    wrap(lake, "_stat_and_scan")
    for fs_call in ("scandir", "stat", "listdir"):
        real = getattr(os, fs_call)

        def fs_spy(path: Any = ".", *a: Any, _real: Any = real, _name: str = fs_call, **k: Any) -> Any:
            if str(path).startswith(under):
                calls.append(f"os.{_name}")
            return _real(path, *a, **k)
        monkeypatch.setattr(os, fs_call, fs_spy)
    return calls


async def test_a_fresh_snapshot_touches_neither_catalog_nor_lake_nor_scanner(
        db_url: str, db: Database, tmp_path: Path, lake_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_demo_lake(ticks_root(contracts_settings()), years=1)
    await build_snapshot(db, "SHFE", "cu")
    settings = Settings(data_dir=tmp_path, database_url=db_url)
    with EmbeddedRedis(tmp_path / "redis") as redis:
        from web.app import create_app

        async with AsyncTestClient(create_app(settings, redis.url), base_url=BASE_URL) as client:
            calls = spy_on(monkeypatch, lake_env)
            for _ in range(3):
                r = await client.get("/api/contracts", params={**Q, "mode": "cache"})
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["ok"] is True and body["cache_stale"] is False
                assert body["snapshot_job"] == {"enqueued": False, "job_id": None, "status": None}
                assert len(body["contracts"]) > 20
                assert r.headers["content-encoding"] == "gzip"  # httpx, like a browser, accepts it
            plain = await client.get("/api/contracts", params=Q, headers={"Accept-Encoding": "identity"})
            assert "content-encoding" not in plain.headers
            assert plain.json()["contracts"] == body["contracts"]
            assert plain.content.endswith(b"}") and b'"snapshot_job": {' in plain.content[-400:]
            page = await client.get("/contracts", params=Q)
            assert page.status_code == 200 and 'data-testid="row-SHFE.cu' in page.text
            assert calls == []
            _, total = await store.list_jobs(db, limit=1)
            assert total == 0  # nothing enqueued either

            # the spy sees the slow path when it is taken
            r = await client.get("/api/contracts", params={**Q, "mode": "compute"})
            assert r.status_code == 200 and r.json()["ok"] is True
            assert {"get_catalog", "scan_lake", "_stat_and_scan", "os.stat"} <= set(calls)
