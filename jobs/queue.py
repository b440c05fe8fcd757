"""Submitting, cancelling, retrying and requeueing jobs: the only ways a job enters arq."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from redis.exceptions import RedisError

from jobs import store
from jobs.db import utcnow
from jobs.engine import Engine
from jobs.keys import ARQ_FUNCTION, CANCEL_CHANNEL
from jobs.models import Job
from jobs.registry import get_kind, validate_params
from jobs.status import ACTIVE_STATUSES, TERMINAL_STATUSES, UNFINISHED_STATUSES, Status

log = logging.getLogger("marketdesk.queue")


class QueueFull(Exception):
    def __init__(self, max_queued: int) -> None:
        super().__init__(f"Job queue full. {max_queued} jobs pending. Try again later.")


class QueueUnavailable(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(f"The job queue (Redis) is unreachable, so no job was created: {detail}")


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


async def _enqueue(engine: Engine, job: Job) -> None:
    # the kind travels with the id so the worker can claim the job without reading it first
    queued = await engine.redis.enqueue_job(ARQ_FUNCTION, job.id, job.kind, _job_id=job.arq_job_id)
    if queued is None:  # cannot happen with fresh ids; say so loudly if it does
        raise RedisError(f"arq refused job id {job.arq_job_id}")


async def submit(engine: Engine, kind_name: str, raw_params: dict[str, Any],
                 *, validated: bool = False) -> Job:
    """Validate, write the row as pending, enqueue. Raises ParamsError, QueueFull, QueueUnavailable."""
    kind = get_kind(kind_name)
    params = raw_params if validated else validate_params(kind, raw_params)
    job_id = new_job_id()
    job = Job(id=job_id, kind=kind.name, params=params, status=Status.PENDING.value,
              arq_job_id=new_arq_id(job_id))
    if kind.exclusive and await store.count_pending(
            engine.db, kinds=[kind.name], statuses=[s.value for s in UNFINISHED_STATUSES]):
        raise JobBusy(kind.exclusive)
    if not await store.insert_job(engine.db, job, engine.settings.max_queued):
        raise QueueFull(engine.settings.max_queued)
    try:
        await _enqueue(engine, job)
    except (RedisError, OSError) as exc:
        await store.delete_job(engine.db, job.id)
        raise QueueUnavailable(str(exc) or type(exc).__name__) from exc
    try:
        await engine.publish_job(job, created=True)
    except (RedisError, OSError):  # the job is safe in the store and queue; only the event is lost
        log.warning("could not publish the creation of job %s", job.id)
    return job


async def cancel(engine: Engine, job_id: str) -> Job:
    job = await store.get_job(engine.db, job_id)
    if job is None:
        raise JobNotFound(job_id)
    if job.status in TERMINAL_STATUSES:
        raise JobConflict(job, "cancelled")
    now = utcnow()
    if job.status == Status.PENDING:
        done = await store.transition(
            engine.db, job_id, Status.CANCELLED,
            {"cancel_requested_at": now, "finished_at": now, "phase": "Cancelled before it started"},
            only_from=[Status.PENDING])
        if done is not None:
            try:
                await engine.redis.zrem("arq:queue", job.arq_job_id or "")
            except (RedisError, OSError):
                pass  # the worker skips a job that is no longer pending
            await engine.publish_job(done)
            return done
    # running (or it just started): ask the worker to stop at its next check
    marked = await store.update_job(engine.db, job_id, {"cancel_requested_at": now},
                                    only_from=[s.value for s in ACTIVE_STATUSES])
    if marked is None:
        current = await store.get_job(engine.db, job_id)
        assert current is not None
        if current.status in TERMINAL_STATUSES:
            raise JobConflict(current, "cancelled")
        return current
    # the "cancelling" state first: the worker's "cancelled" must come after it in the stream
    await engine.publish_job(marked)
    await engine.redis.publish(CANCEL_CHANNEL, job_id)
    return marked


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
    arq_id = new_arq_id(job.id)
    from_status = Status(job.status)
    values: dict[str, Any] = {"arq_job_id": arq_id, "worker_id": None, "heartbeat_at": None,
                              "phase": f"Requeued: {reason}"}
    where = Job.__table__.c.arq_job_id == job.arq_job_id  # type: ignore[attr-defined]
    if from_status == Status.PENDING:
        moved = await store.update_job(engine.db, job.id, values, only_from=[Status.PENDING.value],
                                       where=where)
    else:
        moved = await store.transition(engine.db, job.id, Status.PENDING, values,
                                       only_from=[from_status], where=where)
    if moved is None:
        return None
    await _enqueue(engine, moved)
    await engine.log(job.id, f"Requeued: {reason}", level="warning")
    await engine.publish_job(moved)
    return moved
