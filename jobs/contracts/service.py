"""What the API and the page answer from: the stored snapshot, at once, and a build enqueued
when it is missing, older than MARKETDESK_CONTRACTS_SNAPSHOT_TTL_S, or a refresh is asked for.
Nothing here touches the catalog, the lake or the scanner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cachetools import LRUCache

from jobs import queue
from jobs.contracts import store as cstore
from jobs.contracts.build import BUILD, KIND
from jobs.contracts.settings import contracts_settings
from jobs.db import utcnow
from jobs.engine import Engine
from jobs.models import Job


@dataclass
class Answer:
    exchange: str
    var: str
    row: cstore.SnapshotRow | None
    age_s: float | None
    stale: bool
    job: dict[str, Any]  # snapshot_job: {enqueued, job_id, status}
    running: Job | None  # the build under way after this answer, if any

    @property
    def has_snapshot(self) -> bool:
        return self.row is not None and self.row.built_at is not None

    def head(self) -> dict[str, Any]:
        """The fields the answer adds to the stored snapshot (after its own)."""
        row = self.row
        return {"cache_stale": self.stale, "snapshot_age_s": self.age_s, "snapshot_job": self.job,
                "last_refresh_error": row.last_error if row else None,
                "last_refresh_error_at": row.last_error_at.isoformat() if row and row.last_error_at else None}

    async def parts(self, engine: Engine) -> tuple[bytes, bytes]:
        """The API's answer as (front, end): the front is the stored payload as it is, read and
        kept once per snapshot and process (the same bytes object each time), open for the
        head's fields, which make the end."""
        head = json.dumps(self.head()).encode()
        if self.row is not None and self.row.built_at is not None:
            front = await payload_front(engine, self.exchange, self.var, self.row)
            if front is not None:
                return front, head[1:]
        return json.dumps({"ok": False, "error": "contracts_snapshot_building",
                           "exchange": self.exchange, "var": self.var, **self.head()}).encode(), b""

    async def to_json(self, engine: Engine) -> bytes:
        return b"".join(await self.parts(engine))


# the stored payloads this process has read, per (exchange, var) and build time, without their
# closing brace: a snapshot never changes once written, so the request path reads only its
# small columns
_PAYLOADS: LRUCache[tuple[str, str, str], bytes] = LRUCache(maxsize=64)


async def payload_front(engine: Engine, exchange: str, var: str, row: cstore.SnapshotRow) -> bytes | None:
    assert row.built_at is not None
    key = (exchange, var, row.built_at.isoformat())
    front = _PAYLOADS.get(key)
    if front is None:
        text = row.payload
        if text is None:
            full = await cstore.snapshot(engine.db, exchange, var)
            if full is None or full.built_at != row.built_at or full.payload is None:
                return None  # replaced meanwhile: the caller's row is the older one
            text = full.payload
        front = _PAYLOADS[key] = text.rstrip().removesuffix("}").encode() + b", "
    return front


def age_of(built_at: datetime | None, now: datetime) -> float | None:
    return None if built_at is None else round(max((now - built_at).total_seconds(), 0.0), 3)


async def answer(engine: Engine, exchange: str, var: str, *, refresh: bool = False,
                 payload: bool = False) -> Answer:
    """The snapshot at once; a build enqueued (or joined) when it is missing, stale or a refresh
    is asked for. A full queue or an unreachable Redis does not stop the answer: the
    snapshot_job says why no build started."""
    row, running = await cstore.snapshot_and_build(engine.db, exchange, var,
                                                   BUILD.dedupe_key({"exchange": exchange, "var": var}),
                                                   payload=payload)
    now = utcnow()
    age = age_of(row.built_at if row else None, now)
    stale = age is not None and age > contracts_settings().contracts_snapshot_ttl_s
    needs_build = refresh or age is None or stale
    job: dict[str, Any] = {"enqueued": False, "job_id": running.id if running else None,
                           "status": running.status if running else None}
    if needs_build and (running is None or refresh):
        params = {"exchange": exchange, "var": var, "refresh_catalog": refresh}
        try:
            found, enqueued = await queue.submit_or_join(engine, KIND, params, validated=True)
        except (queue.QueueFull, queue.QueueUnavailable) as exc:
            job["error"] = str(exc)
        else:
            running = found
            job = {"enqueued": enqueued, "job_id": found.id, "status": found.status}
    return Answer(exchange, var, row, age, stale, job, running)

