"""Bounded caches: size and age limits, values nobody can change, counts, threads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from litestar.testing import TestClient

from jobs.caches import BoundedCache, all_caches, cache_stats
from web.render import job_row


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_cache_holds_at_most_maxsize_entries_least_recently_used_out_first() -> None:
    cache: BoundedCache[int, str] = BoundedCache("test.size", maxsize=3, ttl=60)
    for i in range(3):
        cache[i] = str(i)
    assert cache.get(0) == "0"  # 0 is now the most recently used
    cache[3] = "3"
    assert len(cache) == 3
    assert cache.get(1) is None  # the least recently used went
    assert cache.get(0) == "0" and cache.get(3) == "3"


def test_an_entry_expires_after_ttl() -> None:
    clock = Clock()
    cache: BoundedCache[str, int] = BoundedCache("test.age", maxsize=10, ttl=5, timer=clock)
    cache["a"] = 1
    clock.now = 4.9
    assert cache.get("a") == 1
    clock.now = 5.1
    assert cache.get("a") is None
    assert len(cache) == 0


def test_values_handed_out_cannot_be_changed_by_callers() -> None:
    cache: BoundedCache[str, object] = BoundedCache("test.frozen", maxsize=10, ttl=60)
    original = {"symbols": ["AAPL"], "meta": {"n": 1}, "tags": {"x"}}
    cache["k"] = original
    got = cache.get("k")
    with pytest.raises(TypeError):
        got["symbols"] = []  # type: ignore[index]
    with pytest.raises(TypeError):
        got["meta"]["n"] = 2  # type: ignore[index]
    with pytest.raises(AttributeError):
        got["symbols"].append("MSFT")  # type: ignore[index]
    original["symbols"].append("MSFT")  # the caller's own object is not the cached one
    assert cache.get("k")["symbols"] == ("AAPL",)  # type: ignore[index]


def test_hits_and_misses_are_counted_and_registered_by_name() -> None:
    cache: BoundedCache[str, int] = BoundedCache("test.counts", maxsize=10, ttl=60)
    assert cache.get("x") is None
    assert cache.get_or_set("x", lambda: 7) == 7
    assert cache.get("x") == 7
    stats = next(s for s in cache_stats() if s["name"] == "test.counts")
    assert (stats["hits"], stats["misses"], stats["size"]) == (1, 2, 1)
    # a module reloaded registers its new cache under the same name, in place of the old one
    again: BoundedCache[str, int] = BoundedCache("test.counts", maxsize=10, ttl=60)
    assert [c for c in all_caches() if c.name == "test.counts"] == [again]


def test_concurrent_threads_keep_the_bound_and_the_counts() -> None:
    cache: BoundedCache[int, int] = BoundedCache("test.threads", maxsize=50, ttl=60)
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        try:
            for i in range(5000):
                key = (seed * 7919 + i) % 200
                if cache.get(key) is None:
                    cache[key] = key
        except BaseException as exc:  # pragma: no cover - the failure we look for
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) <= 50
    assert cache.hits + cache.misses == 8 * 5000


def test_the_finished_rows_cache_of_the_web_is_a_bounded_registered_cache() -> None:
    from jobs.db import utcnow
    from jobs.models import Job

    job = Job(id="f" * 32, kind="prices.download", status="completed", finished_at=utcnow(),
              started_at=utcnow())
    before = next(s for s in cache_stats() if s["name"] == "web.finished_rows")
    first = job_row(job, embed=False)
    second = job_row(job, embed=False)
    after = next(s for s in cache_stats() if s["name"] == "web.finished_rows")
    assert first == second
    assert after["hits"] >= before["hits"] + 1
    assert after["maxsize"] == 4096 and after["ttl"] > 0


def test_an_unfinished_jobs_row_is_kept_a_second_and_never_past_its_version() -> None:
    from dataclasses import replace
    from datetime import timedelta

    from jobs.db import utcnow
    from jobs.models import Job

    job = Job(id="u" * 32, kind="prices.download", status="running", started_at=utcnow(),
              progress_done=1, progress_total=4)
    first = job_row(job, embed=False)
    assert job_row(job, embed=False) is first  # the same version within the second: kept
    moved = replace(job, progress_done=2, updated_at=job.updated_at + timedelta(milliseconds=1))
    assert 'value="2"' in job_row(moved, embed=False)  # a new version is never served stale
    stats = next(s for s in cache_stats() if s["name"] == "web.unfinished_rows")
    assert stats["maxsize"] == 1024 and stats["ttl"] <= 1.0


def test_a_jobs_page_is_answered_again_from_its_cache_until_one_of_its_rows_changes(
        web: TestClient[Any]) -> None:
    r = web.post("/api/jobs", json={"kind": "prices.download", "params": {
        "symbols": ["MSFT"], "start_date": "2025-01-02", "end_date": "2025-01-10"}})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]

    def pages() -> dict[str, int]:
        return next(s for s in cache_stats() if s["name"] == "web.jobs_pages")

    misses = pages()["misses"]
    first = web.get("/jobs")
    assert f'data-testid="job-row-{job_id}" data-status="pending"' in first.text
    assert pages()["misses"] == misses + 1  # one page rendered, one miss on /operations
    hits = pages()["hits"]
    assert web.get("/jobs").text == first.text
    assert pages()["hits"] == hits + 1  # the same rows at the same versions: answered as kept
    # the fragment htmx asks for is kept apart from the whole page
    table = web.get("/jobs", headers={"HX-Request": "true", "HX-Target": "jobs-table"})
    assert table.text.startswith('<div id="jobs-table"') and "<html" not in table.text
    assert web.post(f"/api/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    # at once, not a second later: the row's new version is a new page
    assert f'data-testid="job-row-{job_id}" data-status="cancelled"' in web.get("/jobs").text
    stats = pages()
    assert stats["maxsize"] == 256 and stats["ttl"] <= 1.0
    # the page around the table is kept per view, and no input can take the table's place in it
    marker = "<!--jobs-table-->"
    r = web.get("/jobs", params={"q": marker})
    assert r.status_code == 200
    assert r.text.count('<div id="jobs-table"') == 1 and marker not in r.text
    assert 'value="&lt;!--jobs-table--&gt;"' in r.text


def test_requests_that_shared_a_jobs_page_read_share_its_render(
        web: TestClient[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # forty operators' pages that got one shared read (Database.read_shared, tested in
    # test_db) of a view nobody has rendered yet, as when jobs change: rendered once for all
    import httpx

    from tests.inprocess import BASE_URL
    from web import dashboard

    r = web.post("/api/prices/download", json={
        "symbols": ["MSFT"], "start_date": "2025-01-02", "end_date": "2025-01-10"})
    assert r.status_code == 202, r.text
    renders: list[str] = []
    real_render, real_view = dashboard.render, dashboard._jobs_view

    def counting(name: str, **ctx: Any) -> Any:
        renders.append(name)
        return real_render(name, **ctx)
    reads: list[asyncio.Future[Any]] = []

    async def one_read_for_all(*args: Any, **kwargs: Any) -> Any:
        if not reads:
            reads.append(asyncio.ensure_future(real_view(*args, **kwargs)))
        return await asyncio.shield(reads[0])
    monkeypatch.setattr(dashboard, "render", counting)
    monkeypatch.setattr(dashboard, "_jobs_view", one_read_for_all)
    dashboard._PAGES.clear()

    async def at_once() -> list[httpx.Response]:
        # requests at once, in the app's own loop (the test client sends one at a time)
        transport = httpx.ASGITransport(app=web.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            return list(await asyncio.gather(*(client.get("/jobs") for _ in range(40))))

    answers = web.blocking_portal.call(at_once)
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1  # the same page for all of them
    assert f'data-testid="job-row-{r.json()["job_id"]}"' in answers[0].text
    assert len(reads) == 1 and renders.count("dashboard/jobs_table.html") == 1, renders
