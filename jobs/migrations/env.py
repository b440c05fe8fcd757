"""Alembic environment: migrations run through the process's Database (SQLite on its thread,
PostgreSQL over asyncpg), in batch mode so SQLite can alter tables."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from jobs.db import Database
from jobs.migrate import target_metadata

config = context.config


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata(),
        render_as_batch=True,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    db = Database(config.get_main_option("sqlalchemy.url") or "")
    db.run_blocking(_run)
    db.dispose_blocking()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
