"""The web half of a slice: its routes, its live regions and its nav entry, declared once.

A domain's ``web/<name>.py`` exposes ``WEB = WebSlice(...)`` (found through the domain's
``web`` field); the engine's own pages (overview, jobs, job page) are a slice too
(``web.dashboard``). The app mounts every slice's router, the nav lists their entries, and the
event hub serves their regions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.domain import load_domains

if TYPE_CHECKING:
    from litestar import Router

    from jobs.engine import Engine
    from jobs.events import Event

Message = tuple[str, str]  # (SSE event name, HTML)
# (engine, topic, the event, or None for the region's current state) -> messages
Render = Callable[["Engine", str, "Event | None"], Awaitable[list[Message]]]


@dataclass(frozen=True)
class Region:
    """A live region of a page: the topic it lives on (its prefix: ``jobs``, ``job``, ...), the
    event types that change it, how it renders.

    ``on_connect``: part of the state a fresh connection is sent first. ``coalesce``: its
    render is heavy (or sums many events up): it is rendered from the state as it is then, at
    once after a quiet spell and at most every ``web.events.COALESCE_SECONDS`` while its
    events keep coming, never once per event. ``keyed``: the topic takes an argument
    (``job:<id>``).
    """

    topic: str
    render: Render
    follows: tuple[str, ...] = ()
    on_connect: bool = True
    coalesce: bool = False
    keyed: bool = False


@dataclass(frozen=True)
class NavEntry:
    label: str
    path: str


@dataclass(frozen=True)
class WebSlice:
    router: Router | None = None
    regions: tuple[Region, ...] = ()
    nav: tuple[NavEntry, ...] = ()
    # a folder of templates of its own (a slice shipped outside this repository); the
    # built-in slices keep theirs in templates/<name>/
    templates: Path | None = None
    # ASGI middleware (Litestar middleware factories) and lifespan context managers
    # (fn(app) -> async context manager) the app adds for this slice, after its own
    middleware: tuple[Any, ...] = ()
    lifespan: tuple[Any, ...] = ()


@lru_cache(maxsize=1)
def load_slices() -> tuple[WebSlice, ...]:
    """The engine's slice, then each declared domain's, in the domains' order."""
    modules = ["web.dashboard", *(d.web for d in load_domains() if d.web)]
    return tuple(import_module(m).WEB for m in modules)


def all_regions() -> tuple[Region, ...]:
    return tuple(r for s in load_slices() for r in s.regions)
