"""The event stream: after every committed change, one entry is appended to a Redis stream.

An entry names its type (``job``, ``log``, or a domain's own), the topics it concerns
(``jobs``, ``job:<id>``, ...) and carries its data as JSON. Web processes read the stream
and turn entries into HTML fragments; nothing here knows about HTML.
"""

from __future__ import annotations

import asyncio
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


# (type, topics, data): what EventBus.publish takes
EventSpec = tuple[str, tuple[str, ...], dict[str, Any]]


def job_topics(job_id: str) -> tuple[str, ...]:
    return ("jobs", f"job:{job_id}")


class EventBus:
    """Appends events to the stream. Events published in one pass of the event loop's
    callbacks (say, ten jobs claimed together) go out in one pipeline: one round trip."""

    def __init__(self, redis: Redis, maxlen: int = 10_000) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self._pending: list[tuple[tuple[EventSpec, ...], asyncio.Future[None]]] = []

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
        """Append one event now; its stream id."""
        entry_id = await self.publish_to(self.redis, type_, topics, data)
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    async def publish_batched(self, *events: EventSpec) -> None:
        """Append ``events`` in order, with whatever else is published in this pass of the loop."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._send_pending)
        self._pending.append((events, done))
        await done

    def _send_pending(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        _SENDING.add(task)
        task.add_done_callback(_SENDING.discard)

    async def _send(self, batch: list[tuple[tuple[EventSpec, ...], asyncio.Future[None]]]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for events, _ in batch:
                    for event in events:
                        self.publish_to(pipe, *event)
                await pipe.execute()
        except BaseException as exc:
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


_SENDING: set[asyncio.Task[None]] = set()  # keeps the sending tasks alive until they finish


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
