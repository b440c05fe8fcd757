"""Schema migrations (alembic), run by `marketdesk migrate` and before `marketdesk serve`."""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlmodel import SQLModel

import jobs.models  # noqa: F401  (registers the engine's tables)
from jobs.domain import load_domains

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def target_metadata() -> object:
    """Every table: the engine's and each declared domain's."""
    for domain in load_domains():
        for module in domain.tables:
            importlib.import_module(module)
    return SQLModel.metadata


def version_locations() -> list[str]:
    """The engine's revisions, then each domain's own folder of them."""
    dirs = [MIGRATIONS_DIR / "versions"]
    dirs += [d.migrations for d in load_domains() if d.migrations is not None]
    return [str(d) for d in dirs]


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_locations", " ".join(version_locations()))
    cfg.set_main_option("path_separator", "space")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at ``url`` to ``revision`` (blocking; call from a thread in async code)."""
    if url.startswith("sqlite"):
        db_path = url.split(":///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)
    if url.startswith("sqlite"):
        _analyze(url)


def _analyze(url: str) -> None:
    """Give SQLite's planner statistics (it has none until ANALYZE runs, and then picks
    indexes badly on big tables); sampled, so it takes milliseconds at any size."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


async def upgrade_async(url: str, revision: str = "heads") -> None:
    await asyncio.to_thread(upgrade, url, revision)
