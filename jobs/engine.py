"""The connections a process shares: settings, database, Redis (arq's pool) and the event bus."""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool

from jobs import store
from jobs.db import Database
from jobs.events import EventBus, job_topics
from jobs.models import Job
from jobs.registry import load_kinds
from jobs.settings import Settings


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

    async def publish_job(self, job: Job, *, created: bool = False) -> str:
        kind = load_kinds().get(job.kind)
        topics = job_topics(job.id) + (kind.topics if kind and job.is_terminal else ())
        data = job_payload(job)
        if created:
            data["event"] = "created"
        return await self.bus.publish("job", topics, data)

    async def publish_finished(self, job: Job, line: dict[str, Any]) -> None:
        """The final state and its log line, in one round trip to Redis."""
        kind = load_kinds().get(job.kind)
        async with self.redis.pipeline(transaction=False) as pipe:
            self.bus.publish_to(pipe, "job", job_topics(job.id) + (kind.topics if kind else ()),
                                job_payload(job))
            self.bus.publish_to(pipe, "log", (f"job:{job.id}",), {"job_id": job.id, "line": line})
            await pipe.execute()

    async def publish_log(self, job_id: str, line: dict[str, Any]) -> str:
        return await self.bus.publish("log", (f"job:{job_id}",), {"job_id": job_id, "line": line})

    async def log(self, job_id: str, message: str, level: str = "info") -> None:
        line = await store.add_log(self.db, job_id, message, level, keep=self.settings.log_lines_per_job)
        await self.publish_log(job_id, line.to_api())


def job_payload(job: Job) -> dict[str, Any]:
    """A job as the API and the templates see it (the same dict in both)."""
    data = job.to_api()
    kind = load_kinds().get(job.kind)
    data["title"] = kind.title if kind else job.kind
    data["summary"] = kind.describe(job.params) if kind else ""
    return data
