"""The shape: the engine names no domain, and a domain declared outside the tree is served,
migrated, run and rendered live with no edit anywhere else."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import httpx

from tests.stack import ROOT, Stack, sse_events

ENGINE = ROOT / "jobs"


def _domain_packages() -> set[str]:
    return {p.parent.name for p in ENGINE.glob("*/__init__.py") if p.parent.name != "migrations"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_engine_imports_no_domain() -> None:
    domains = _domain_packages()
    assert {"prices", "simulation"} <= domains  # the test sees the domains it guards against
    offenders = {}
    for module in sorted(ENGINE.glob("*.py")):
        named = {name for name in _imports(module)
                 if name.split(".")[0] == "jobs" and len(name.split(".")) > 1
                 and name.split(".")[1] in domains}
        if named:
            offenders[module.name] = sorted(named)
    assert offenders == {}, f"engine modules import domains: {offenders}"


def test_the_domains_are_declared_in_one_place() -> None:
    from jobs.domain import load_domains
    from jobs.registry import load_kinds

    names = [d.name for d in load_domains()]
    assert names.index("prices") < names.index("simulation")  # simulation builds on prices
    kinds = load_kinds()
    assert {"prices.download", "simulation.run"} <= set(kinds)


def test_a_domain_from_outside_is_served_migrated_run_and_rendered_live(tmp_path: Path) -> None:
    env = {"MARKETDESK_DOMAINS": "tests.sample_domain"}
    with Stack(tmp_path / "stack", env=env) as s:
        page = httpx.get(f"{s.url}/notes", timeout=10)
        assert page.status_code == 200, page.text
        assert 'href="/notes"' in page.text and 'data-testid="notes"' in page.text
        assert 'href="/notes"' in httpx.get(f"{s.url}/", timeout=10).text  # in every page's nav
        with httpx.stream("GET", f"{s.url}/events", params={"topic": "notes"},
                          timeout=httpx.Timeout(10, read=15)) as stream:
            events = sse_events(stream)
            first = next(e for e in events if e.get("event") == "notes")  # its state on connect
            assert "<li>" not in first["data"]
            job_id = s.submit("notes.write", text="written by a worker")
            assert s.wait(job_id)["status"] == "completed"
            deadline = time.monotonic() + 10
            for event in events:
                if event.get("event") == "notes" and "written by a worker" in event["data"]:
                    break
                assert time.monotonic() < deadline
        assert "<li>written by a worker</li>" in httpx.get(f"{s.url}/notes", timeout=10).text
        bad = httpx.post(f"{s.url}/api/jobs", json={"kind": "notes.write", "params": {"text": ""}},
                         timeout=10)
        assert bad.status_code == 400 and "text" in bad.text


async def test_a_worker_warms_every_domain_up_off_its_loop_before_its_first_job(monkeypatch) -> None:
    """A domain's first-use costs (the holidays library building a calendar: ~0.3 s, over a
    second on a busy machine) must not land on a worker's event loop inside its first job,
    where they stall its heartbeats and every other job."""
    import threading

    from jobs import domain, worker

    order: list[str] = []
    loop_thread = threading.get_ident()

    def warm_up() -> None:
        order.append("warm-up" if threading.get_ident() != loop_thread else "warm-up ON THE LOOP")

    class State:
        def start(self) -> None:
            order.append("jobs start")

    monkeypatch.setattr(domain, "load_domains", lambda: (domain.Domain(
        name="warm", title="Warm", warm_up=warm_up),))
    await worker._on_startup({"state": State()})
    assert order == ["warm-up", "jobs start"]
