"""The event stream: after every committed change, one entry is appended to a Redis stream.

An entry names its type (``job``, ``log``, or a domain's own), the topics it concerns
(``jobs``, ``job:<id>``, ...) and carries its data as JSON. Web processes read the stream
and turn entries into HTML fragments; nothing here knows about HTML.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobs.keys import EVENT_STREAM

log = logging.getLogger("marketdesk.events")


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
    """Appends events to the stream, in the order they are published.

    ``publish_batched`` and ``publish_soon`` share one sender: events published while a
    pipeline is on its way (say, ten jobs claimed together) go out together in the next one,
    so a busy worker pays one round trip for many events, and order is kept.
    """

    def __init__(self, redis: Redis, maxlen: int = 10_000) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self._pending: list[tuple[tuple[EventSpec, ...], asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._dropping = False
        self.dropped = 0  # events lost to Redis outages

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
        """Append one event now, on its own; its stream id (raises when Redis is down: for
        callers that need the id; the others use ``publish_batched``, which never does)."""
        entry_id = await self.publish_to(self.redis, type_, topics, data)
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    async def publish_batched(self, *events: EventSpec) -> None:
        """Append ``events`` in order, after everything published before; returns once sent."""
        await self._enqueue(events)

    def publish_soon(self, *events: EventSpec) -> None:
        """The same without waiting for it (a failure is logged; later events still follow)."""
        self._enqueue(events).add_done_callback(_log_failure)

    async def flush(self) -> None:
        """Wait until everything published so far is sent (or failed)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.wait({self._sender})

    def _enqueue(self, events: tuple[EventSpec, ...]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((events, done))
        if self._sender is None or self._sender.done():
            # starts on the loop's next pass: what the rest of this one publishes joins it
            self._sender = loop.create_task(self._send_all())
        return done

    async def _send_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for events, _ in batch:
                        for event in events:
                            self.publish_to(pipe, *event)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                # live events are a courtesy, the database holds the truth: during a Redis
                # outage they are dropped (pages read the current state when they reconnect),
                # and the work publishing them goes on
                self.dropped += sum(len(events) for events, _ in batch)
                if not self._dropping:
                    log.warning("Redis is unreachable (%s): live events are dropped until it is "
                                "back", type(exc).__name__)
                self._dropping = True
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    for _, done in self._pending:
                        if not done.done():
                            done.set_exception(exc)
                    self._pending = []
                    raise
            else:
                if self._dropping:
                    log.warning("Redis is back: %s live events were dropped", self.dropped)
                self._dropping = False
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)


def _log_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("could not publish an event: %s", done.exception())


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
