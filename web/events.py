"""The live stream: one Redis-stream reader per web process, fanned out to SSE clients.

Each entry of the event stream is rendered once per topic by the live regions that follow its
type (``web.slice.Region``), and the same HTML goes to every client of that topic through a
bounded queue. Each topic renders in a lane of its own, so a slow render delays only its own
topic; heavy regions are coalesced. Tools (``format=json``) get each event once, whatever
the number of its topics they follow. A client that falls behind is disconnected; its
browser reconnects with Last-Event-ID and resumes from the stream. A fresh connection first
gets the current state of its topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from litestar import Request, get
from litestar.exceptions import ServiceUnavailableException, ValidationException
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent

from jobs.engine import Engine, cancel_until_done, redis_client
from jobs.events import Event, latest_id, oldest_id, read_after
from jobs.keys import EVENT_STREAM
from jobs.status import UNFINISHED_STATUSES
from web.render import EMBED
from web.slice import Message, Region, all_regions

log = logging.getLogger("marketdesk.events")

COALESCE_SECONDS = 0.25
RETRY_AFTER_SECONDS = 5
LANE_SIZE = 10_000  # events a topic may have waiting for its renders before its clients resume
TOPIC_RE = re.compile(r"^(?P<prefix>[a-z]+)(?::(?P<arg>[A-Za-z0-9_.-]{1,64}))?$")


def regions_of(prefix: str) -> list[Region]:
    return [r for r in all_regions() if r.topic == prefix]


def stale_job_event(event: Event, versions: dict[str, str]) -> bool:
    """A job event older than one already sent for that job (two processes publish job events,
    the web on a cancel request and the worker on its way, and their XADDs can cross).
    ``versions`` remembers the newest ``updated_at`` seen per job."""
    if event.type != "job":
        return False
    job_id, updated = event.data.get("id"), event.data.get("updated_at") or ""
    if updated and updated < versions.get(job_id, ""):
        return True
    versions[job_id] = updated
    if len(versions) > 10_000:
        versions.pop(next(iter(versions)))
    return False


def topic_prefix(topic: str) -> str:
    return topic.split(":", 1)[0]


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


CLOSE = object()


@dataclass(eq=False)
class Client:
    topics: frozenset[str]
    queue: asyncio.Queue[object]
    as_json: bool = False  # raw event data for tools (the CLI), instead of HTML fragments
    embed: bool = False  # fragments for an embedded panel (links keep ?embed=1)
    overflowed: bool = False
    max_bytes: int = 4_000_000  # what may wait for it in memory, whatever the number of events
    queued_bytes: int = 0

    @property
    def variant(self) -> str:
        return "json" if self.as_json else ("embed" if self.embed else "html")

    def offer(self, item: object) -> None:
        if self.overflowed:
            return
        size = len(item[1]) if isinstance(item, tuple) else 0
        try:
            if self.queued_bytes + size > self.max_bytes:
                raise asyncio.QueueFull
            self.queue.put_nowait(item)
            self.queued_bytes += size
        except asyncio.QueueFull:
            # too slow: drop it rather than grow; it reconnects and resumes from the stream
            self.overflowed = True
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(CLOSE)
            self.queued_bytes = 0

    async def next(self) -> object:
        item = await self.queue.get()
        if isinstance(item, tuple):
            self.queued_bytes = max(0, self.queued_bytes - len(item[1]))
        return item


@dataclass
class Hub:
    engine: Engine
    queue_size: int = 256
    client_bytes: int = 4_000_000
    count: int = 0  # clients connected
    by_topic: dict[str, set[Client]] = field(default_factory=lambda: defaultdict(set))
    position: str = "0-0"
    shutdown: anyio.Event = field(default_factory=anyio.Event)
    _task: asyncio.Task[None] | None = None
    job_versions: dict[str, str] = field(default_factory=dict)
    # per topic: the events waiting for its renders, and the task rendering them in order
    _lanes: dict[str, tuple[asyncio.Queue[Event], asyncio.Task[None]]] = field(default_factory=dict)
    # coalesced regions: topic -> (the latest event id they owe an update for, its event types)
    _owed: dict[str, tuple[str, set[str]]] = field(default_factory=dict)
    _coalesced_at: dict[str, float] = field(default_factory=dict)
    _coalesce_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # in-process readers of every event (the operations monitor's log buffer): the stream is
    # read and decoded once per process, not once per reader
    taps: list[Callable[[Event], None]] = field(default_factory=list)

    @property
    def clients(self) -> set[Client]:
        return {c for clients in self.by_topic.values() for c in clients}

    async def start(self) -> None:
        self._redis = redis_client(self.engine.redis_url, socket_timeout=30.0)
        with contextlib.suppress(RedisError, OSError):
            self.position = await latest_id(self._redis)
        self._task = asyncio.create_task(self._read_forever())

    async def stop(self) -> None:
        self.shutdown.set()
        for client in self.clients:
            client.offer(CLOSE)
        await cancel_until_done([self._task, *self._coalesce_tasks,
                                 *(task for _, task in self._lanes.values())])
        await self._redis.aclose()

    def subscribe(self, topics: frozenset[str], as_json: bool = False, embed: bool = False) -> Client:
        client = Client(topics, asyncio.Queue(maxsize=self.queue_size), as_json, embed,
                        max_bytes=self.client_bytes)
        self.count += 1
        for topic in topics:
            self.by_topic[topic].add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        self.count -= 1
        for topic in client.topics:
            subscribers = self.by_topic.get(topic)
            if subscribers is not None:
                subscribers.discard(client)
                if not subscribers:
                    del self.by_topic[topic]
                    lane = self._lanes.pop(topic, None)
                    if lane is not None:
                        lane[1].cancel()

    async def _read_forever(self) -> None:
        failing = False
        while True:
            try:
                events = await read_after(self._redis, self.position, count=500, block_ms=5000)
                if failing:
                    log.warning("event stream readable again")
                    failing = False
                if not events:
                    newest = await latest_id(self._redis)
                    if id_key(newest) < id_key(self.position):  # the stream was wiped
                        self.position = "0-0"
                    continue
                for event in events:
                    self.position = event.id
                    self.dispatch(event)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if not failing:  # once per outage, not twice a second
                    log.warning("event stream read failed (%s); retrying until Redis is back",
                                type(exc).__name__)
                failing = True
                await asyncio.sleep(0.5)
                continue
            except Exception:
                log.exception("event dispatch failed")

    def is_stale(self, event: Event) -> bool:
        return stale_job_event(event, self.job_versions)

    def dispatch(self, event: Event) -> None:
        """Hand the event to each of its topics' lanes (no render here: a slow one must not
        hold the others), and its data to tools, once per tool."""
        for tap in self.taps:
            try:
                tap(event)
            except Exception:
                log.exception("an event tap failed on %s", event.type)
        if self.is_stale(event):
            return
        tools: set[Client] = set()
        for topic in event.topics:
            subscribers = self.by_topic.get(topic)
            if not subscribers:
                continue
            pages = False
            for client in subscribers:
                if client.as_json:
                    tools.add(client)
                else:
                    pages = True
            if pages and not self._lane_full(topic):
                self._lane(topic).put_nowait(event)
        if tools:
            wire = encode(event.id, json_messages(event))
            for client in tools:
                client.offer((event.id, wire))

    def _lane(self, topic: str) -> asyncio.Queue[Event]:
        lane = self._lanes.get(topic)
        if lane is None:
            queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=LANE_SIZE)
            lane = self._lanes[topic] = (queue, asyncio.create_task(self._run_lane(topic, queue)))
        return lane[0]

    def _lane_full(self, topic: str) -> bool:
        """A topic whose renders cannot keep up: its clients resume from the stream instead."""
        if not self._lane(topic).full():
            return False
        log.warning("topic %s is %s events behind; its clients will resume", topic, LANE_SIZE)
        for client in list(self.by_topic.get(topic, ())):
            client.offer(CLOSE)
        return True

    async def _run_lane(self, topic: str, queue: asyncio.Queue[Event]) -> None:
        prefix = topic_prefix(topic)
        while True:
            event = await queue.get()
            try:
                regions = [r for r in regions_of(prefix) if event.type in r.follows]
                direct = [r for r in regions if not r.coalesce]
                if direct:
                    await self._deliver(topic, event.id, lambda client, e=event, rs=direct:
                                        render_regions(client, rs, self.engine, topic, e))
                if len(direct) < len(regions):
                    self._owe(topic, event)
            except Exception:
                log.exception("rendering %s for %s failed", event.type, topic)

    async def _deliver(self, topic: str, entry_id: str,
                       render: Callable[[Client], Awaitable[list[Message]]]) -> None:
        """Offer ``render``'s messages to every page subscribed to ``topic``: rendered and encoded
        once per variant (html, embed), whatever the number of clients."""
        wire: dict[str, bytes] = {}
        for client in list(self.by_topic.get(topic, ())):
            if client.as_json:
                continue
            if client.variant not in wire:
                messages = await render(client)
                wire[client.variant] = encode(entry_id, messages) if messages else b""
            if wire[client.variant]:
                client.offer((entry_id, wire[client.variant]))

    def _owe(self, topic: str, event: Event) -> None:
        owed = self._owed.get(topic)
        self._owed[topic] = (event.id, (owed[1] if owed else set()) | {event.type})
        if owed is None:
            loop = asyncio.get_running_loop()
            delay = self._coalesced_at.get(topic, -COALESCE_SECONDS) + COALESCE_SECONDS - loop.time()
            task = loop.create_task(self._send_coalesced(topic, max(0.0, delay)))
            self._coalesce_tasks.add(task)
            task.add_done_callback(self._coalesce_tasks.discard)

    async def _send_coalesced(self, topic: str, delay: float) -> None:
        await asyncio.sleep(delay)
        entry_id, types = self._owed.pop(topic)
        self._coalesced_at[topic] = asyncio.get_running_loop().time()
        regions = [r for r in regions_of(topic_prefix(topic))
                   if r.coalesce and types.intersection(r.follows)]
        await self._deliver(topic, entry_id, lambda client: render_regions(
            client, regions, self.engine, topic, None))


async def render_regions(client: Client, regions: list[Region], engine: Engine, topic: str,
                         event: Event | None) -> list[Message]:
    """The regions' messages, in order, as this client's variant (embedded panels keep ?embed=1
    in their links); a region whose render fails is logged and left out."""
    out: list[Message] = []
    token = EMBED.set(client.embed)
    try:
        for region in regions:
            try:
                out.extend(await region.render(engine, topic, event))
            except Exception:
                log.exception("rendering a region of %s failed", topic)
    finally:
        EMBED.reset(token)
    return out


async def render_for(client: Client, event: Event, topic: str, engine: Engine) -> list[Message]:
    """What a page subscribed to ``topic`` is sent for ``event`` (coalesced regions aside)."""
    if client.as_json:
        return json_messages(event)
    regions = [r for r in regions_of(topic_prefix(topic))
               if event.type in r.follows and not r.coalesce]
    return await render_regions(client, regions, engine, topic, event)


def json_messages(event: Event) -> list[Message]:
    return [(event.type, json.dumps(event.data, default=str))]


def parse_topics(raw: list[str]) -> frozenset[str]:
    keyed = {r.topic: r.keyed for r in all_regions()}
    topics = set()
    for topic in raw:
        m = TOPIC_RE.match(topic or "")
        if not m or m["prefix"] not in keyed or keyed[m["prefix"]] != bool(m["arg"]):
            known = ", ".join(sorted(p + (f":<{p} id>" if k else "") for p, k in keyed.items()))
            raise ValidationException(f"topic: {topic!r} is not a topic; allowed: {known}")
        topics.add(topic)
    if not topics:
        raise ValidationException("topic: give at least one topic (e.g. ?topic=jobs)")
    return frozenset(topics)


def _sse(entry_id: str, messages: list[Message]) -> list[ServerSentEvent]:
    return [ServerSentEvent(data=html, event=name, id=entry_id) for name, html in messages]


def encode(entry_id: str, messages: list[Message]) -> bytes:
    """The wire form of an entry's messages, ready to be written to any number of clients."""
    return b"".join(sse.encode() for sse in _sse(entry_id, messages))


async def _replay(hub: Hub, client: Client, last_id: str) -> tuple[list[ServerSentEvent], str] | None:
    """Events after ``last_id`` for the client's topics, or None when they are no longer held."""
    redis = hub.engine.redis
    first = await oldest_id(redis)
    if first is None or id_key(last_id) < id_key(first) and last_id != "0-0":
        # trimmed past the client's position: it cannot resume without a gap
        return None
    out: list[ServerSentEvent] = []
    cursor = last_id
    versions: dict[str, str] = {}
    while True:
        events = await read_after(redis, cursor, count=500)
        if not events:
            break
        for event in events:
            cursor = event.id
            if stale_job_event(event, versions):
                continue
            mine = [topic for topic in event.topics if topic in client.topics]
            if client.as_json and mine:
                out.extend(_sse(event.id, json_messages(event)))
                continue
            for topic in mine:
                out.extend(_sse(event.id, await render_for(client, event, topic, hub.engine)))
    return out, cursor


async def _current_state(hub: Hub, client: Client) -> list[Message]:
    messages: list[Message] = []
    if client.as_json:
        from jobs import store
        from jobs.engine import job_payload

        for topic in sorted(client.topics):
            if topic_prefix(topic) == "job":
                job = await store.get_job(hub.engine.db, topic.split(":", 1)[1])
                if job is not None:
                    messages.append(("job", json.dumps(job_payload(job), default=str)))
            elif topic == "jobs":  # the unfinished jobs; also tells a tool it is subscribed
                jobs = await store.jobs_in(hub.engine.db, [s.value for s in UNFINISHED_STATUSES])
                messages.append(("jobs", json.dumps([job_payload(j) for j in jobs], default=str)))
        return messages
    for topic in sorted(client.topics):
        regions = [r for r in regions_of(topic_prefix(topic)) if r.on_connect]
        messages.extend(await render_regions(client, regions, hub.engine, topic, None))
    return messages


async def client_stream(hub: Hub, topics: frozenset[str], last_event_id: str | None,
                        as_json: bool = False, embed: bool = False
                        ) -> AsyncIterator[ServerSentEvent | bytes]:
    client = hub.subscribe(topics, as_json, embed)
    try:
        async for item in _stream(hub, client, last_event_id):
            yield item
    except (RedisError, OSError) as exc:
        # Redis went away under this stream: end it (the browser reconnects, and is told to
        # retry while the outage lasts) rather than fail the response with a traceback
        log.warning("an event stream ended: Redis is unreachable (%s)", type(exc).__name__)
    finally:
        hub.unsubscribe(client)


async def _stream(hub: Hub, client: Client, last_event_id: str | None
                  ) -> AsyncIterator[ServerSentEvent | bytes]:
    sent_up_to = hub.position
    replay = None
    if last_event_id:
        with contextlib.suppress(ValueError, RedisError):
            id_key(last_event_id)
            replay = await _replay(hub, client, last_event_id)
    if replay is not None:
        events, sent_up_to = replay
        for sse in events:
            yield sse
    else:
        sent_up_to = await latest_id(hub.engine.redis)
        for sse in _sse(sent_up_to, await _current_state(hub, client)):
            yield sse
    while True:
        item = await client.next()
        if item is CLOSE:
            return
        entry_id, wire = item  # type: ignore[misc]
        if id_key(entry_id) <= id_key(sent_up_to):
            continue  # already sent by the replay or the state above
        yield wire


@get("/events")
async def events_stream(request: Request, topic: list[str], format: str = "html",
                        embed: bool = False) -> EventSourceResponse:
    """Server-sent events for the given topics (``jobs``, ``prices``, ``job:<id>``).

    ``format=html`` (default) sends the page's fragments; ``format=json`` the raw event data.
    """
    hub: Hub = request.app.state.hub
    topics = parse_topics(topic)
    if format not in ("html", "json"):
        raise ValidationException(f"format: {format!r} is not allowed; allowed: html, json")
    limit = hub.engine.settings.max_sse_clients
    if hub.count >= limit:
        raise ServiceUnavailableException(
            f"{limit} live connections are open (MARKETDESK_MAX_SSE_CLIENTS); try again shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    try:
        await hub.engine.redis.ping()
    except (RedisError, OSError):
        raise ServiceUnavailableException(
            "live updates are unavailable: the event stream (Redis) is unreachable; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    last_event_id = request.headers.get("last-event-id")
    return EventSourceResponse(
        client_stream(hub, topics, last_event_id, format == "json", embed),
        ping=int(hub.engine.settings.sse_keepalive_seconds),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        shutdown_event=hub.shutdown,
        shutdown_grace_period=1,
        # no per-send timeout (its cancel scope cost a fifth of fan-out CPU): a stalled client
        # only fills its bounded queue, is marked overflowed and dropped
    )


__all__ = ["EVENT_STREAM", "Hub", "events_stream"]
