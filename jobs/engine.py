"""The connections a process shares: settings, database, Redis (arq's pool) and the event bus."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool

from jobs import store
from jobs.db import Database
from jobs.events import EventBus, EventSpec, job_topics
from jobs.models import Job
from jobs.redact import redact
from jobs.registry import load_kinds
from jobs.settings import Settings


async def run_forever(step: Callable[[], Awaitable[Any]], every: float, log: logging.Logger,
                      what: str = "") -> None:
    """Run ``step`` again and again, ``every`` seconds apart, until cancelled. A failure is logged
    and the loop goes on after a pause (at least a second): a background loop that died
    silently would strand jobs or freeze a page."""
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            pause = max(every, 1.0)
            log.exception("%s%s failed; trying again in %gs", what, step.__name__, pause)
            await asyncio.sleep(pause)
            continue
        if every:
            await asyncio.sleep(every)


async def cancel_until_done(tasks: Iterable[asyncio.Task[Any] | None], again_every: float = 0.5) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling those still running again
    every ``again_every`` seconds: a cancel can be lost inside a library's code (Python 3.11's
    ``wait_for`` dropped one and an app's shutdown hung for good), and a stop must end."""
    every = {task for task in tasks if task is not None}
    pending = every
    while pending := {task for task in pending if not task.done()}:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=again_every)
    for task in every:  # an error a task ended with is its own to log; retrieved, not re-raised
        if not task.cancelled():
            task.exception()


def redis_client(url: str, *, socket_timeout: float | None = 10.0) -> ArqRedis:
    pool = ConnectionPool.from_url(
        url, socket_connect_timeout=2.0, socket_timeout=socket_timeout,
        health_check_interval=30, retry_on_timeout=False,
    )
    return ArqRedis(connection_pool=pool)


class Engine:
    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.db = Database(settings.resolved_database_url)
        self.redis = redis_client(redis_url)
        self.bus = EventBus(self.redis, maxlen=settings.event_stream_maxlen)
        load_kinds()

    async def close(self) -> None:
        await self.redis.aclose()
        await self.db.dispose()

    def job_event(self, job: Job, *, created: bool = False) -> EventSpec:
        """The event telling a job's new state: to its own topic, the jobs list and, once it
        has finished, the topics its kind's results concern."""
        kind = load_kinds().get(job.kind)
        topics = job_topics(job.id) + (kind.topics if kind and job.is_terminal else ())
        data = job_payload(job)
        if created:
            data["event"] = "created"
        return "job", topics, data

    @staticmethod
    def log_event(job_id: str, line: dict[str, Any]) -> EventSpec:
        return "log", (f"job:{job_id}",), {"job_id": job_id, "line": line}

    async def publish(self, *events: EventSpec) -> None:
        """Append events to the stream, in order (batched with others of the same moment)."""
        await self.bus.publish_batched(*events)

    def publish_soon(self, *events: EventSpec) -> None:
        """Append events without waiting (in order with the others; a failure is logged)."""
        self.bus.publish_soon(*events)

    async def publish_job(self, job: Job) -> None:
        await self.publish(self.job_event(job))

    async def log(self, job_id: str, message: str, level: str = "info") -> None:
        line = await store.add_log(self.db, job_id, redact(message), level,
                                   keep=self.settings.log_lines_per_job)
        await self.publish(self.log_event(job_id, line))


def job_payload(job: Job) -> dict[str, Any]:
    """A job as the API and the templates see it (the same dict in both)."""
    data = job.to_api()
    kind = load_kinds().get(job.kind)
    data["title"] = kind.title if kind else job.kind
    try:
        data["summary"] = kind.describe(job.params) if kind else ""
    except Exception:  # params an older version wrote: the job still shows, unsummarised
        data["summary"] = "(parameters unreadable)"
    return data
