from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.stack import Stack, postgres_base_url

DATABASES = ["sqlite"] + (["postgres"] if postgres_base_url() else [])


@pytest.fixture(scope="session", params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def stack(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The shared stack: one worker, quick heartbeats, against each configured database."""
    env = {"MARKETDESK_HEARTBEAT_SECONDS": "0.5", "MARKETDESK_RECONCILE_SECONDS": "0.5"}
    with Stack(tmp_path_factory.mktemp(f"stack-{database}"), env=env, database=database) as s:
        yield s


@pytest.fixture
def make_stack(database: str, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Stacks with their own settings, stopped after the test."""
    started: list[Stack] = []

    def make(**kwargs: object) -> Stack:
        n = len(started)
        s = Stack(tmp_path / f"stack{n}", database=database, **kwargs)  # type: ignore[arg-type]
        started.append(s)
        return s.start()

    yield make
    for s in started:
        s.stop()
