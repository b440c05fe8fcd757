"""The event stream: after every committed change, one entry is appended to a Redis stream.

An entry names its type (``job``, ``log``, or a domain's own), the topics it concerns
(``jobs``, ``job:<id>``, ...) and carries its data as JSON. Web processes read the stream
and turn entries into HTML fragments; nothing here knows about HTML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from jobs.keys import EVENT_STREAM


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    topics: tuple[str, ...]
    data: dict[str, Any]

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Event:
        def text(v: bytes | str) -> str:
            return v.decode() if isinstance(v, bytes) else v

        f = {text(k): text(v) for k, v in fields.items()}
        return cls(
            id=text(entry_id),
            type=f.get("type", ""),
            topics=tuple(t for t in f.get("topics", "").split(",") if t),
            data=json.loads(f.get("data") or "{}"),
        )


def job_topics(job_id: str) -> tuple[str, ...]:
    return ("jobs", f"job:{job_id}")


class EventBus:
    def __init__(self, redis: Redis, maxlen: int = 10_000) -> None:
        self.redis = redis
        self.maxlen = maxlen

    def publish_to(self, client: Any, type_: str, topics: tuple[str, ...] | list[str],
                   data: dict[str, Any]) -> Any:
        """XADD the event through ``client`` (the connection, or a pipeline to batch with)."""
        return client.xadd(
            EVENT_STREAM,
            {"type": type_, "topics": ",".join(topics), "data": json.dumps(data, default=str)},
            maxlen=self.maxlen,
            approximate=True,
        )

    async def publish(self, type_: str, topics: tuple[str, ...] | list[str],
                      data: dict[str, Any]) -> str:
        entry_id = await self.publish_to(self.redis, type_, topics, data)
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


async def read_after(redis: Redis, last_id: str, count: int = 500,
                     block_ms: int | None = None) -> list[Event]:
    """Entries after ``last_id`` ('$' for only new ones when blocking)."""
    reply = await redis.xread({EVENT_STREAM: last_id}, count=count, block=block_ms)
    events: list[Event] = []
    for _stream, entries in reply or []:
        for entry_id, fields in entries:
            events.append(Event.from_entry(entry_id, fields))
    return events


async def oldest_id(redis: Redis) -> str | None:
    entries = await redis.xrange(EVENT_STREAM, count=1)
    if not entries:
        return None
    entry_id = entries[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


async def latest_id(redis: Redis) -> str:
    entries = await redis.xrevrange(EVENT_STREAM, count=1)
    if not entries:
        return "0-0"
    entry_id = entries[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
