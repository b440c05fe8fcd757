from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from jobs.db import Database
from jobs.migrate import upgrade_async
from tests.inprocess import app_client
from tests.stack import Stack, create_postgres_database, postgres_base_url

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


@pytest.fixture(scope="session")
def web(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Any]]:
    """The web app in this process (no worker): for what the web answers by itself."""
    with app_client(tmp_path_factory.mktemp(f"web-{database}"), database) as client:
        yield client


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


@pytest.fixture
async def db_url(database: str, tmp_path: Path) -> str:
    """A fresh, migrated database of each configured kind."""
    if database == "postgres":
        base = postgres_base_url()
        assert base
        url = await asyncio.to_thread(create_postgres_database, base)  # it runs its own loop
    else:
        url = f"sqlite:///{tmp_path / 'store.db'}"
    await upgrade_async(url)
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database_ = Database(db_url)
    try:
        yield database_
    finally:
        await database_.dispose()
