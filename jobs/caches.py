"""Bounded in-process caches: each bounded in size and in age, safe under concurrent tasks and
threads, handing out values callers cannot mutate, and registered by name so the operations
page shows how often it hits.

Built on cachetools' ``TTLCache`` (an LRU with a per-entry age limit) behind a lock: cachetools'
caches are not thread-safe by themselves, and a web process reads its caches from the event
loop and from the database's reader threads alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from cachetools import TTLCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING = object()


def freeze(value: Any) -> Any:
    """``value`` as something no caller can change: mappings become read-only views, lists
    tuples, sets frozensets, recursively. Strings, numbers and tuples of them are kept."""
    if isinstance(value, (str, bytes, int, float, bool, type(None), frozenset)):
        return value
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set):
        return frozenset(freeze(v) for v in value)
    return value  # anything else is the caller's to make immutable (e.g. markupsafe.Markup)


class BoundedCache(Generic[K, V]):
    """At most ``maxsize`` entries, each for at most ``ttl`` seconds, least recently used out
    first; every value frozen (``freeze``) as it is stored."""

    def __init__(self, name: str, maxsize: int, ttl: float,
                 timer: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 1 or ttl <= 0:
            raise ValueError(f"cache {name!r}: maxsize must be >= 1 and ttl > 0 "
                             f"(got maxsize={maxsize}, ttl={ttl})")
        self.name = name
        self.maxsize = maxsize
        self.ttl = ttl
        self._data: TTLCache[K, V] = TTLCache(maxsize, ttl, timer=timer)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        register(self)

    def get(self, key: K, default: Any = None, *, again: bool = False) -> V | Any:
        """``again``: a second look for the same answer (a miss is counted once, at the first)."""
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is _MISSING:
                self.misses += not again
                return default
            self.hits += 1
            return value

    def set(self, key: K, value: V) -> V:
        frozen = freeze(value)
        with self._lock:
            self._data[key] = frozen
        return frozen  # type: ignore[no-any-return]

    def __setitem__(self, key: K, value: V) -> None:
        self.set(key, value)

    def get_or_set(self, key: K, make: Callable[[], V]) -> V:
        """The cached value, or ``make()`` stored (outside the lock: two threads may both make
        it; the cache keeps the last)."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            value = self.set(key, make())
        return value  # type: ignore[no-any-return]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            self._data.expire()
            return len(self._data)

    def stats(self) -> dict[str, Any]:
        total = self.hits + self.misses
        return {"name": self.name, "size": len(self), "maxsize": self.maxsize, "ttl": self.ttl,
                "hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hits / total, 3) if total else None}


class FunctionCache:
    """A ``functools.lru_cache`` of a pure function (bounded in size; its results never go
    stale) shown beside the others, from its own ``cache_info()``."""

    def __init__(self, name: str, fn: Any) -> None:
        self.name = name
        self.fn = fn
        self.ttl = float("inf")
        register(self)  # type: ignore[arg-type]

    def stats(self) -> dict[str, Any]:
        info = self.fn.cache_info()
        total = info.hits + info.misses
        return {"name": self.name, "size": info.currsize, "maxsize": info.maxsize,
                "ttl": None, "hits": info.hits, "misses": info.misses,
                "hit_rate": round(info.hits / total, 3) if total else None}


_REGISTRY: dict[str, BoundedCache[Any, Any]] = {}
_REGISTRY_LOCK = threading.Lock()


def register(cache: BoundedCache[Any, Any]) -> None:
    """Known by name (a module reloaded registers its new cache in place of the old one)."""
    with _REGISTRY_LOCK:
        _REGISTRY[cache.name] = cache


def all_caches() -> list[BoundedCache[Any, Any]]:
    with _REGISTRY_LOCK:
        return sorted(_REGISTRY.values(), key=lambda c: c.name)


def cache_stats() -> list[dict[str, Any]]:
    return [c.stats() for c in all_caches()]
