"""The live stream: one Redis-stream reader per web process, fanned out to SSE clients.

Each entry of the event stream is rendered once per topic by the renderer registered for
its type, and the same HTML goes to every client of that topic through a bounded queue.
A client that falls behind is disconnected; its browser reconnects with Last-Event-ID and
resumes from the stream. A fresh connection first gets the current state of its topics.
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
from litestar.exceptions import ValidationException
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent

from jobs.engine import Engine, redis_client
from jobs.events import Event, latest_id, oldest_id, read_after
from jobs.keys import EVENT_STREAM
from jobs.status import UNFINISHED_STATUSES
from web.render import EMBED

log = logging.getLogger("marketdesk.events")

Message = tuple[str, str]  # (SSE event name, HTML)
Renderer = Callable[[Event, str, Engine], Awaitable[list[Message]]]
Snapshot = Callable[[str, Engine], Awaitable[list[Message]]]

_RENDERERS: dict[tuple[str, str], list[Renderer]] = defaultdict(list)
_SNAPSHOTS: dict[str, Snapshot] = {}
_SUMMARIES: dict[tuple[str, str], list[Snapshot]] = defaultdict(list)
SUMMARY_SECONDS = 0.25
TOPIC_RE = re.compile(r"^(?P<prefix>[a-z]+)(?::(?P<arg>[A-Za-z0-9_.-]{1,64}))?$")


def renderer(event_type: str, topic_prefix: str) -> Callable[[Renderer], Renderer]:
    """Register ``fn`` to turn events of ``event_type`` into messages for topics of this prefix;
    several renderers may serve one pair (e.g. a kind adding its own regions to the job page)."""

    def deco(fn: Renderer) -> Renderer:
        _RENDERERS[(event_type, topic_prefix)].append(fn)
        return fn
    return deco


def summary(event_type: str, topic_prefix: str) -> Callable[[Snapshot], Snapshot]:
    """Register ``fn`` to render a region that sums a topic up (counts, the running jobs) after
    events of ``event_type``: at once after a quiet spell, then at most once per
    ``SUMMARY_SECONDS`` while events keep coming, with the state as it is then. A burst of a
    thousand job events renders it a few times, not a thousand."""

    def deco(fn: Snapshot) -> Snapshot:
        _SUMMARIES[(event_type, topic_prefix)].append(fn)
        return fn
    return deco


def snapshot(topic_prefix: str) -> Callable[[Snapshot], Snapshot]:
    def deco(fn: Snapshot) -> Snapshot:
        _SNAPSHOTS[topic_prefix] = fn
        return fn
    return deco


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

    @property
    def variant(self) -> str:
        return "json" if self.as_json else ("embed" if self.embed else "html")

    def offer(self, item: object) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # too slow: drop it rather than grow; it reconnects and resumes from the stream
            self.overflowed = True
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(CLOSE)


@dataclass
class Hub:
    engine: Engine
    queue_size: int = 256
    by_topic: dict[str, set[Client]] = field(default_factory=lambda: defaultdict(set))
    position: str = "0-0"
    shutdown: anyio.Event = field(default_factory=anyio.Event)
    _task: asyncio.Task[None] | None = None
    job_versions: dict[str, str] = field(default_factory=dict)
    # summaries: topic -> the latest event id they owe an update for; when they last went out
    _owed: dict[str, str] = field(default_factory=dict)
    _summary_sent: dict[str, float] = field(default_factory=dict)
    _summary_tasks: set[asyncio.Task[None]] = field(default_factory=set)

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
        for task in [self._task, *self._summary_tasks]:
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._redis.aclose()

    def subscribe(self, topics: frozenset[str], as_json: bool = False, embed: bool = False) -> Client:
        client = Client(topics, asyncio.Queue(maxsize=self.queue_size), as_json, embed)
        for topic in topics:
            self.by_topic[topic].add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        for topic in client.topics:
            subscribers = self.by_topic.get(topic)
            if subscribers is not None:
                subscribers.discard(client)
                if not subscribers:
                    del self.by_topic[topic]

    async def _read_forever(self) -> None:
        while True:
            try:
                events = await read_after(self._redis, self.position, count=500, block_ms=5000)
                if not events:
                    newest = await latest_id(self._redis)
                    if id_key(newest) < id_key(self.position):  # the stream was wiped
                        self.position = "0-0"
                    continue
                for event in events:
                    self.position = event.id
                    await self.dispatch(event)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("event stream read failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("event dispatch failed")

    def is_stale(self, event: Event) -> bool:
        return stale_job_event(event, self.job_versions)

    async def dispatch(self, event: Event) -> None:
        if self.is_stale(event):
            return
        for topic in event.topics:
            if not self.by_topic.get(topic):
                continue
            await self._deliver(topic, event.id,
                                lambda client, t=topic: render_for(client, event, t, self.engine))
            if (event.type, topic_prefix(topic)) in _SUMMARIES:
                self._owe_summary(topic, event)

    async def _deliver(self, topic: str, entry_id: str,
                       render: Callable[[Client], Awaitable[list[Message]]]) -> None:
        """Offer ``render``'s messages to every subscriber of ``topic``: rendered and encoded
        once per variant (html, embed, json), whatever the number of clients."""
        wire: dict[str, bytes] = {}
        for client in list(self.by_topic.get(topic, ())):
            if client.variant not in wire:
                messages = await render(client)
                wire[client.variant] = encode(entry_id, messages) if messages else b""
            if wire[client.variant]:
                client.offer((entry_id, wire[client.variant]))

    def _owe_summary(self, topic: str, event: Event) -> None:
        first = topic not in self._owed
        self._owed[topic] = event.id
        if first:
            loop = asyncio.get_running_loop()
            delay = self._summary_sent.get(topic, -SUMMARY_SECONDS) + SUMMARY_SECONDS - loop.time()
            task = loop.create_task(self._send_summary(topic, event.type, max(0.0, delay)))
            self._summary_tasks.add(task)
            task.add_done_callback(self._summary_tasks.discard)

    async def _send_summary(self, topic: str, event_type: str, delay: float) -> None:
        await asyncio.sleep(delay)
        entry_id = self._owed.pop(topic)
        self._summary_sent[topic] = asyncio.get_running_loop().time()
        fns = _SUMMARIES[(event_type, topic_prefix(topic))]

        async def render(client: Client) -> list[Message]:
            if client.as_json:
                return []  # tools get the events themselves
            return await _rendered(client, [lambda fn=fn: fn(topic, self.engine) for fn in fns],
                                   f"the summary of {topic}")

        await self._deliver(topic, entry_id, render)


async def _rendered(client: Client, renders: list[Callable[[], Awaitable[list[Message]]]],
                    what: str) -> list[Message]:
    """Every render's messages, in order, as this client's variant (embedded panels keep
    ?embed=1 in their links); a render that fails is logged and left out."""
    out: list[Message] = []
    token = EMBED.set(client.embed)
    try:
        for render in renders:
            try:
                out.extend(await render())
            except Exception:
                log.exception("rendering %s failed", what)
    finally:
        EMBED.reset(token)
    return out


async def render_for(client: Client, event: Event, topic: str, engine: Engine) -> list[Message]:
    """Every registered renderer's messages for this event and topic, in registration order."""
    if client.as_json:
        return json_messages(event)
    renderers = _RENDERERS.get((event.type, topic_prefix(topic)), ())
    return await _rendered(client, [lambda fn=fn: fn(event, topic, engine) for fn in renderers],
                           f"{event.type} for {topic}")


def json_messages(event: Event) -> list[Message]:
    return [(event.type, json.dumps(event.data, default=str))]


def parse_topics(raw: list[str]) -> frozenset[str]:
    topics = set()
    for topic in raw:
        m = TOPIC_RE.match(topic or "")
        if not m or m["prefix"] not in _SNAPSHOTS or (m["prefix"] == "job") != bool(m["arg"]):
            known = ", ".join(sorted(p + (":<job id>" if p == "job" else "") for p in _SNAPSHOTS))
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
            for topic in event.topics:
                if topic in client.topics:
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
    token = EMBED.set(client.embed)
    try:
        for topic in sorted(client.topics):
            messages.extend(await _SNAPSHOTS[topic_prefix(topic)](topic, hub.engine))
    finally:
        EMBED.reset(token)
    return messages


async def client_stream(hub: Hub, topics: frozenset[str], last_event_id: str | None,
                        as_json: bool = False, embed: bool = False
                        ) -> AsyncIterator[ServerSentEvent | bytes]:
    client = hub.subscribe(topics, as_json, embed)
    try:
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
            item = await client.queue.get()
            if item is CLOSE:
                return
            entry_id, wire = item  # type: ignore[misc]
            if id_key(entry_id) <= id_key(sent_up_to):
                continue  # already sent by the replay or the state above
            yield wire
    finally:
        hub.unsubscribe(client)


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


__all__ = ["EVENT_STREAM", "Hub", "events_stream", "renderer", "snapshot", "summary"]
