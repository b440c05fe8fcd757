"""Submitting, cancelling, retrying and requeueing jobs: the only ways a job enters arq."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.exceptions import RedisError

from jobs import store
from jobs.db import utcnow
from jobs.engine import Engine
from jobs.events import EventSpec
from jobs.keys import ARQ_FUNCTION, CANCEL_CHANNEL
from jobs.models import Job
from jobs.registry import get_kind, validate_params
from jobs.status import TERMINAL_STATUSES, Status

log = logging.getLogger("marketdesk.queue")


class QueueFull(Exception):
    def __init__(self, max_queued: int) -> None:
        super().__init__(f"Job queue full. {max_queued} jobs pending. Try again later.")


class QueueUnavailable(Exception):
    def __init__(self, detail: str) -> None:
        # the cause goes to the log, not to the client: it names Redis's internal address
        log.warning("the job queue (Redis) is unreachable: %s", detail)
        super().__init__("The job queue is unreachable, so no job was created. Try again shortly.")


class JobBusy(Exception):
    """A job of an exclusive kind is already pending or running."""


class JobNotFound(Exception):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job {job_id} not found")


class JobConflict(Exception):
    def __init__(self, job: Job, action: str) -> None:
        self.status = job.status
        super().__init__(f"Job {job.id} is {job.status}; it cannot be {action}.")


def new_job_id() -> str:
    return uuid.uuid4().hex


def new_arq_id(job_id: str) -> str:
    """One arq id per attempt: arq refuses an id whose job or result still exists, and an old
    abort marker would abort a later job with the same id."""
    return f"{job_id}.{uuid.uuid4().hex[:12]}"


def forget_arq_job(pipe: Any, queue_name: str, arq_id: str) -> None:
    """Remove everything arq holds for an abandoned attempt (its queue entry, its job, its
    in-progress and retry keys): left alone they live a day and hold memory and slots."""
    pipe.zrem(queue_name, arq_id)
    pipe.delete(job_key_prefix + arq_id, in_progress_key_prefix + arq_id, retry_key_prefix + arq_id)


async def _enqueue(engine: Engine, job: Job, *events: EventSpec, replaces: str | None = None) -> None:
    """Put ``job`` in arq's queue under its current arq id and append ``events`` to the stream,
    all in one transaction and one round trip (arq's own enqueue_job takes three: it watches
    for an existing id, which our fresh ids never are; SET NX still refuses one that is)."""
    redis = engine.redis
    arq_id = job.arq_job_id or ""
    score = timestamp_ms()
    # the kind travels with the id so the worker can claim the job without reading it first
    payload = serialize_job(ARQ_FUNCTION, (job.id, job.kind), {}, None, score)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(job_key_prefix + arq_id, payload, px=redis.expires_extra_ms, nx=True)
        pipe.zadd(redis.default_queue_name, {arq_id: score}, nx=True)
        for event in events:
            engine.bus.publish_to(pipe, *event)
        if replaces:
            forget_arq_job(pipe, redis.default_queue_name, replaces)
        replies = await pipe.execute()
    if not replies[0]:  # cannot happen with fresh ids; say so loudly if it does
        raise RedisError(f"arq job id {arq_id} already exists")


async def submit(engine: Engine, kind_name: str, raw_params: dict[str, Any],
                 *, validated: bool = False) -> Job:
    """Validate, write the row as pending, enqueue. Raises ParamsError, JobBusy, QueueFull,
    QueueUnavailable. For a kind with a key, the unfinished job holding it if there is one."""
    job, _ = await submit_or_join(engine, kind_name, raw_params, validated=validated)
    return job


async def submit_or_join(engine: Engine, kind_name: str, raw_params: dict[str, Any],
                         *, validated: bool = False) -> tuple[Job, bool]:
    """``submit``, telling whether a new job was enqueued (False: the unfinished job with the
    same key was returned instead)."""
    kind = get_kind(kind_name)
    params = raw_params if validated else validate_params(kind, raw_params)
    job_id = new_job_id()
    job = Job(id=job_id, kind=kind.name, params=params, status=Status.PENDING.value,
              arq_job_id=new_arq_id(job_id), dedupe_key=kind.dedupe_key(params))
    refused = await store.insert_job(engine.db, job, engine.settings.max_queued,
                                     exclusive=kind.exclusive is not None)
    if isinstance(refused, Job):
        return refused, False
    if refused == "busy":
        raise JobBusy(kind.exclusive)
    if refused:
        raise QueueFull(engine.settings.max_queued)
    try:
        await _enqueue(engine, job, engine.job_event(job, created=True))
    except (RedisError, OSError) as exc:
        await store.delete_job(engine.db, job.id)
        raise QueueUnavailable(str(exc) or type(exc).__name__) from exc
    return job, True


async def cancel(engine: Engine, job_id: str) -> Job:
    """A pending job is cancelled at once; a running one is asked to stop (its worker hears it
    at once, or at its next heartbeat); a finished one raises JobConflict."""
    found = await store.request_cancel(engine.db, job_id, utcnow())
    if found is None:
        raise JobNotFound(job_id)
    job, outcome = found
    if outcome == "finished":
        raise JobConflict(job, "cancelled")
    async with engine.redis.pipeline(transaction=False) as pipe:
        # the new state first: a running job's "cancelled" must come after its "cancelling"
        engine.bus.publish_to(pipe, *engine.job_event(job))
        if outcome == "cancelled":
            pipe.zrem(engine.redis.default_queue_name, job.arq_job_id or "")
        else:
            pipe.publish(CANCEL_CHANNEL, job_id)
        try:
            await pipe.execute()
        except (RedisError, OSError):
            # the row says it all: a cancelled pending job is skipped by the worker that takes
            # it, and a running one's worker sees the request at its next heartbeat
            log.warning("could not signal the cancel of job %s", job_id)
    return job


async def retry(engine: Engine, job_id: str) -> Job:
    job = await store.get_job(engine.db, job_id)
    if job is None:
        raise JobNotFound(job_id)
    if job.status not in TERMINAL_STATUSES:
        raise JobConflict(job, "retried until it has finished")
    new = await submit(engine, job.kind, dict(job.params), validated=True)
    await engine.log(new.id, f"Retry of job {job.id} ({job.status})")
    return new


async def requeue(engine: Engine, job: Job, reason: str) -> Job | None:
    """Put a job whose arq job or worker vanished back in the queue, under a fresh arq id."""
    moved = await store.requeue(engine.db, job.id, job.status, job.arq_job_id, new_arq_id(job.id),
                                f"Requeued: {reason}", keep=engine.settings.log_lines_per_job)
    if moved is None:
        return None
    row, line = moved
    await _enqueue(engine, row, engine.job_event(row), engine.log_event(row.id, line),
                   replaces=job.arq_job_id)
    return row
