"""Domains declare themselves here, once; the engine, migrations, worker, CLI, demo and web
iterate what is declared and name none of them.

A domain is a slice: ``jobs/<name>/`` (kinds, tables, store, settings, demo seed, CLI verbs),
``web/<name>.py`` (routes and live regions) and ``templates/<name>/``. Its package exposes a
``DOMAIN = Domain(...)``. The domains marketdesk ships are listed in the
``marketdesk.domains`` entry-point group (pyproject.toml), the same way strategies are, so a
desk adds one by installing a package; ``MARKETDESK_DOMAINS`` (comma-separated module paths)
adds more without installing anything (tests use it).
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_settings import BaseSettings

from jobs.settings import read_settings

if TYPE_CHECKING:
    from jobs.db import Database
    from jobs.registry import JobKind

ENTRY_POINT_GROUP = "marketdesk.domains"
EXTRA_DOMAINS_ENV = "MARKETDESK_DOMAINS"

@dataclass(frozen=True)
class Periodic:
    """Work a worker does every ``every`` seconds (a number, or a function reading a setting):
    one worker per period, whatever the number of workers (a lease in Redis decides which)."""

    name: str
    every: float | Callable[[], float]
    run: Callable[[Any], Awaitable[None]]  # fn(engine)

    @property
    def seconds(self) -> float:
        return float(self.every() if callable(self.every) else self.every)


@dataclass(frozen=True)
class Domain:
    """What a domain brings. Every field but ``name`` and ``title`` is optional."""

    name: str
    title: str
    kinds: tuple[JobKind, ...] = ()
    # modules whose SQLModel tables belong to the domain (imported for migrations)
    tables: tuple[str, ...] = ()
    # a folder of alembic revisions (a branch of its own, depending on the engine's schema)
    migrations: Path | None = None
    settings: type[BaseSettings] | None = None
    # the web half: a module with a ``WEB = WebSlice(...)`` (routes, live regions, nav entry)
    web: str | None = None
    # demo data for a first `marketdesk serve`, in order of ``after``
    seed: Callable[[Database], Awaitable[None]] | None = None
    # adds the domain's verbs to the `marketdesk` command: fn(subparsers)
    cli: Callable[[Any], None] | None = None
    # domains this one builds on (their seed runs first)
    after: tuple[str, ...] = ()
    # first-use costs paid at start-up, not on the first request
    warm_up: Callable[[], None] | None = None
    # scheduled work, run by the workers
    periodic: tuple[Periodic, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def _modules() -> list[str]:
    names = [ep.value for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)]
    names += [m.strip() for m in os.environ.get(EXTRA_DOMAINS_ENV, "").split(",") if m.strip()]
    return names


def warm_up_all() -> None:
    """Pay first-use costs (a holiday calendar's data, a catalog) at a process's start, not in
    its first request or on its first job's event loop (each domain says which). Blocking: run
    it in a thread."""
    for domain in load_domains():
        if domain.warm_up is not None:
            domain.warm_up()


@lru_cache(maxsize=1)
def load_domains() -> tuple[Domain, ...]:
    """Every declared domain, each after the ones it builds on."""
    found: dict[str, Domain] = {}
    for path in _modules():
        module_name, _, attr = path.partition(":")
        domain = getattr(importlib.import_module(module_name), attr or "DOMAIN")
        if not isinstance(domain, Domain):
            raise TypeError(f"{path} is not a jobs.domain.Domain")
        found[domain.name] = domain
    ordered: list[Domain] = []

    def visit(domain: Domain, seen: tuple[str, ...] = ()) -> None:
        if domain in ordered:
            return
        if domain.name in seen:
            raise ValueError(f"domains depend on each other in a circle: {' -> '.join(seen)}")
        for name in domain.after:
            if name in found:
                visit(found[name], (*seen, domain.name))
        ordered.append(domain)

    for domain in found.values():
        visit(domain)
    return tuple(ordered)


def get_domain(name: str) -> Domain | None:
    return next((d for d in load_domains() if d.name == name), None)


def check_all_settings() -> None:
    """Read every domain's settings now, so a bad variable stops start-up with its name."""
    for domain in load_domains():
        if domain.settings is not None:
            read_settings(domain.settings)


def add_cli(subparsers: argparse._SubParsersAction[Any]) -> None:  # type: ignore[type-arg]
    for domain in load_domains():
        if domain.cli is not None:
            domain.cli(subparsers)
