"""The web app in the test process, through Litestar's TestClient: the real app with a real
Redis (an embedded one, as `marketdesk serve` starts) and a real database, but no worker and
no uvicorn. For tests of what the web answers by itself (validation, pages, headers): no
process to start, so they stay fast as the app grows."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from jobs.migrate import upgrade
from jobs.redis_embedded import EmbeddedRedis
from jobs.settings import Settings
from tests.stack import create_postgres_database, postgres_base_url

BASE_URL = "http://127.0.0.1"


@contextmanager
def app_client(tmp: Path, database: str = "sqlite", env: dict[str, str] | None = None,
               **settings: Any) -> Iterator[TestClient[Any]]:
    """A client of a freshly migrated app; ``env`` is set for its lifetime (domain settings
    are read from the environment), ``settings`` override the engine's."""
    from web.app import create_app

    tmp.mkdir(parents=True, exist_ok=True)
    if database == "postgres":
        base = postgres_base_url()
        assert base, "MARKETDESK_TEST_POSTGRES_URL is not set"
        url = create_postgres_database(base)
    else:
        url = f"sqlite:///{tmp / 'web.db'}"
    upgrade(url)
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    redis = EmbeddedRedis(tmp / "redis")
    try:
        redis_url = redis.start()
        app = create_app(Settings(data_dir=tmp, database_url=url, redis_url=redis_url, **settings),
                         redis_url)
        with TestClient(app, base_url=BASE_URL, timeout=10) as client:
            yield client
    finally:
        redis.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
