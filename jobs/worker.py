"""The arq worker: the wrapper every job runs in, heartbeats, cancel signals, the reconciler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import traceback
import uuid
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from arq import Worker
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.worker import func
from pydantic import ValidationError
from redis.exceptions import RedisError

from jobs import queue, store
from jobs.context import JobCancelled, JobContext, JobFailed
from jobs.db import utcnow
from jobs.domain import Periodic, load_domains, warm_up_all
from jobs.engine import Engine, cancel_until_done, redis_client, run_forever
from jobs.keys import ARQ_FUNCTION, CANCEL_CHANNEL, PERIODIC_KEY_PREFIX, WORKER_KEY_PREFIX
from jobs.models import Job
from jobs.redact import redact
from jobs.registry import Outcome, ParamsError, get_kind, pydantic_errors
from jobs.settings import Settings
from jobs.status import ACTIVE_STATUSES, UNFINISHED_STATUSES, Status

log = logging.getLogger("marketdesk.worker")


# one per process, kept across restarts of the arq worker inside it (after a Redis outage):
# /healthz counts worker keys, and a restarted worker must not count twice
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


JOB_TIMEOUT = timedelta(days=1)  # cancellation is ours, cooperative, not arq's timeout
IN_PROGRESS_MS = int(JOB_TIMEOUT.total_seconds() + 10) * 1000  # arq's in-progress key's life
UNFINISHED_VALUES = frozenset(s.value for s in UNFINISHED_STATUSES)


class WorkerState:
    """One per worker process: its id, its running jobs, its background loops."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.worker_id = WORKER_ID
        self.active: dict[str, JobContext] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.redis_down = False
        # jobs being handed back to the queue as the worker stops: close() waits for them
        self.handing_back: set[asyncio.Task[None]] = set()

    def hand_back(self, job: Job | Awaitable[Job | None]) -> asyncio.Task[None]:
        """Requeue ``job`` (or the job a claim on its way turns out to have taken) as the worker
        stops, in a task of its own: a second cancellation of the job's task cannot cut it short,
        and close() waits for it before the connections go."""
        async def requeue() -> None:
            taken = job if isinstance(job, Job) else await job
            if taken is not None:
                await queue.requeue(self.engine, taken, "worker shut down")
        task = asyncio.ensure_future(requeue())
        self.handing_back.add(task)
        task.add_done_callback(self.handing_back.discard)
        return task

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(run_forever(self.heartbeat, self.engine.settings.heartbeat_seconds, log)),
            asyncio.create_task(run_forever(self.reconcile, self.engine.settings.reconcile_seconds, log)),
            asyncio.create_task(self._listen_cancels()),
            *(asyncio.create_task(self._periodic(p)) for d in load_domains() for p in d.periodic),
        ]

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self.engine.bus.flush()
        await cancel_until_done(self.tasks)
        with contextlib.suppress(RedisError, OSError):
            await self.engine.redis.delete(WORKER_KEY_PREFIX + self.worker_id)

    async def _periodic(self, periodic: Periodic) -> None:
        """Run ``periodic`` once per period across every worker: the one that takes the
        period's lease runs it."""
        key = PERIODIC_KEY_PREFIX + periodic.name
        while True:
            every = periodic.seconds
            try:
                if await self.engine.redis.set(key, self.worker_id, nx=True, px=max(1, int(every * 1000))):
                    await periodic.run(self.engine)
            except asyncio.CancelledError:
                raise
            except Exception:  # scheduled work that fails once must run again next period
                log.exception("scheduled %s failed; trying again in %ss", periodic.name, every)
            await asyncio.sleep(every)

    async def heartbeat(self) -> None:
        """The database first: it is what says the jobs here are alive, and it must keep
        saying so while Redis is down (else another worker requeues them as lost)."""
        settings = self.engine.settings
        # a cancel whose pubsub message was missed still arrives here
        for job_id in await store.heartbeat(self.engine.db, list(self.active), utcnow()):
            ctx = self.active.get(job_id)
            if ctx is not None and not ctx.cancelled:
                ctx.request_cancel()
        try:
            await self.engine.redis.set(WORKER_KEY_PREFIX + self.worker_id, utcnow().isoformat(),
                                        px=int(settings.lease_seconds * 1000))
        except (RedisError, OSError) as exc:
            if not self.redis_down:
                log.warning("Redis is unreachable (%s); the jobs here keep their lease in the "
                            "database", type(exc).__name__)
            self.redis_down = True
        else:
            self.redis_down = False

    async def _listen_cancels(self) -> None:
        # its own connection, without a read timeout: a quiet channel is not a dead one
        client = redis_client(self.engine.redis_url, socket_timeout=None)
        lost = False
        while True:
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(CANCEL_CHANNEL)
                lost = False
                async for message in pubsub.listen():
                    job_id = message.get("data")
                    job_id = job_id.decode() if isinstance(job_id, bytes) else job_id
                    ctx = self.active.get(job_id or "")
                    if ctx is not None:
                        ctx.request_cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not lost:  # once per outage
                    log.warning("cancel listener lost its connection (%s); reconnecting",
                                type(exc).__name__)
                lost = True
                await asyncio.sleep(1)

    async def reconcile(self) -> None:
        try:
            await reconcile_once(self.engine, skip=set(self.active))
        except (RedisError, OSError):  # an outage (the heartbeat says so): nothing to requeue into
            pass


async def reconcile_once(engine: Engine, skip: set[str] | None = None) -> list[str]:
    """Requeue or fail jobs whose worker stopped heartbeating, and pending jobs arq lost."""
    settings = engine.settings
    now = utcnow()
    touched: list[str] = []
    for job in await store.stale_active_jobs(engine.db, now - timedelta(seconds=settings.lease_seconds)):
        if skip and job.id in skip:
            continue
        if job.cancel_requested_at is not None:
            done = await store.transition(engine.db, job.id, Status.CANCELLED,
                                          {"finished_at": now, "phase": "Cancelled (worker lost)"},
                                          only_from=[Status(job.status)])
        elif job.attempts < settings.max_attempts:
            done = await queue.requeue(engine, job, f"worker lost after attempt {job.attempts}")
        else:
            done = await store.transition(
                engine.db, job.id, Status.FAILED,
                {"finished_at": now, "error": f"worker lost (after {job.attempts} attempts)"},
                only_from=[Status(job.status)])
            if done is not None:
                await engine.log(job.id, "worker lost", level="error")
        if done is not None:
            if done.status != Status.PENDING:  # a requeue has published its own event
                await engine.publish_job(done)
            touched.append(job.id)
    # pending rows whose arq job is gone (Redis wiped or restarted), or was taken by a worker
    # that died before claiming it: arq's in-progress key then outlives it by a day, and arq
    # skips the job while it exists. A live worker claims what it takes within milliseconds,
    # so a key older than the lease on a job still pending marks a dead taker.
    lease_ms = settings.lease_seconds * 1000
    for job in await store.pending_jobs_older_than(engine.db, now - timedelta(seconds=5)):
        arq_id = job.arq_job_id or ""
        async with engine.redis.pipeline(transaction=False) as pipe:
            pipe.exists(job_key_prefix + arq_id)
            pipe.pttl(in_progress_key_prefix + arq_id)
            queued, in_progress_ttl = await pipe.execute()
        if in_progress_ttl > 0:
            if IN_PROGRESS_MS - in_progress_ttl > lease_ms and await queue.requeue(
                    engine, job, "its worker died before starting it"):
                touched.append(job.id)
        elif not queued and await queue.requeue(engine, job, "its queue entry was lost"):
            touched.append(job.id)
    await sweep_queue(engine)
    return touched


async def sweep_queue(engine: Engine, limit: int = 1000) -> int:
    """Remove arq's entries of attempts no job waits for any more (the job finished, or moved
    on to another attempt): what a kill or an outage at the wrong moment leaves behind.
    Returns how many it removed."""
    redis = engine.redis
    arq_ids = [a.decode() if isinstance(a, bytes) else a
               for a in await redis.zrange(redis.default_queue_name, 0, limit - 1)]
    if not arq_ids:
        return 0
    rows = {j.id: j for j in await store.get_jobs(engine.db, list({a.partition(".")[0] for a in arq_ids}))}
    abandoned = []
    for arq_id in arq_ids:
        job = rows.get(arq_id.partition(".")[0])
        # no row: not ours to judge (a job being submitted has its row before its entry)
        if job is not None and (job.arq_job_id != arq_id or job.status not in UNFINISHED_VALUES):
            abandoned.append(arq_id)
    if abandoned:
        async with redis.pipeline(transaction=False) as pipe:
            for arq_id in abandoned:
                queue.forget_arq_job(pipe, redis.default_queue_name, arq_id)
            await pipe.execute()
        log.info("removed %d abandoned queue entries", len(abandoned))
    return len(abandoned)


async def run_job(ctx: dict[str, Any], job_id: str, kind_name: str | None = None) -> str:
    state: WorkerState = ctx["state"]
    engine = state.engine
    arq_id = ctx.get("job_id")
    try:
        kind = get_kind(kind_name) if kind_name else None
    except ValueError:
        kind = None
    if kind is None or kind.choose_first_status is not None:
        job = await store.get_job(engine.db, job_id)
        if job is None or job.arq_job_id != arq_id or job.status != Status.PENDING:
            return "skipped"  # cancelled while queued, or an older attempt's arq job
        try:
            kind = get_kind(job.kind)
        except ValueError as exc:
            failed = await store.transition(engine.db, job.id, Status.FAILED,
                                            {"error": str(exc), "finished_at": utcnow()})
            if failed:
                await engine.publish_job(failed)
            return "failed"
    first_status = kind.first_status
    if kind.choose_first_status is not None:
        try:
            params = kind.params_model.model_validate(job.params)
            first_status = await kind.choose_first_status(engine, params)
        except Exception:  # the job itself will meet and report the problem
            log.exception("choosing the first status of job %s failed", job_id)
    # claim: only a pending row still waiting for this very arq job moves
    claiming = asyncio.ensure_future(
        store.claim(engine.db, job_id, arq_id, first_status, state.worker_id, utcnow()))
    try:
        claimed = await asyncio.shield(claiming)
    except asyncio.CancelledError:
        # the worker is shutting down while the claim is on its way: the database thread
        # finishes it whatever we do, so a job it took is handed back, not left running for a
        # worker that is gone until its lease expires
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(state.hand_back(claiming))
        raise
    if claimed is None:
        return "skipped"
    engine.publish_soon(engine.job_event(claimed))  # its final state follows it, in order
    jctx = JobContext(engine, claimed)
    state.active[job_id] = jctx
    try:
        final, values = await _execute(jctx, kind, claimed)
    except asyncio.CancelledError:
        # the worker is shutting down: hand the job back rather than lose it
        state.active.pop(job_id, None)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(state.hand_back(claimed))
        raise
    finally:
        state.active.pop(job_id, None)
    values.update({"finished_at": utcnow(), "warnings": list(jctx.warnings)})
    if values.get("error"):
        values["error"] = redact(str(values["error"]))
    message = f"Finished: {final.value}" + (f" ({values['error']})" if values.get("error") else "")
    done = await store.finish_job(engine.db, job_id, final, values,
                                  only_from=[jctx.status, *ACTIVE_STATUSES], log_message=message,
                                  log_level="error" if final == Status.FAILED else "info",
                                  keep=engine.settings.log_lines_per_job)
    if done is not None:
        job_row, line = done
        await engine.publish(engine.job_event(job_row), engine.log_event(job_id, line))
    return final.value


async def _execute(jctx: JobContext, kind: Any, job: Job) -> tuple[Status, dict[str, Any]]:
    """Run the job function in this task; its final status and the values to store with it."""
    try:
        params = kind.params_model.model_validate(job.params)
    except ValidationError as exc:  # written by an older version, or by hand
        return Status.FAILED, {"error": f"its parameters cannot be read: {ParamsError(pydantic_errors(exc))}"}
    jctx.stop_after_grace = asyncio.current_task()  # a cancel it ignores past the grace stops it
    try:
        out = await kind.func(jctx, params)
    except asyncio.CancelledError:
        if not jctx.forced:  # the worker is shutting down
            raise
        asyncio.current_task().uncancel()  # type: ignore[union-attr]  # it was our own cancel
        return Status.CANCELLED, {"phase": "Cancelled"}
    except JobCancelled:
        return Status.CANCELLED, {"phase": "Cancelled"}
    except JobFailed as exc:
        return Status.FAILED, {"error": redact(str(exc))}
    except Exception as exc:
        log.exception("job %s failed", job.id)
        tb = redact(traceback.format_exception_only(type(exc), exc)[-1].strip())
        with contextlib.suppress(Exception):
            await jctx.log(tb, level="error")
        return Status.FAILED, {"error": redact(f"{type(exc).__name__}: {exc}")}
    finally:
        jctx.stop_after_grace = None
    if isinstance(out, Outcome):
        return out.status, {"result": out.result, "error": out.error}
    if jctx.cancelled:
        return Status.CANCELLED, {"phase": "Cancelled"}
    return Status.COMPLETED, {"result": out}


async def _on_startup(ctx: dict[str, Any]) -> None:
    state: WorkerState = ctx["state"]
    # before the first job: its first use of a calendar must not stall this loop (heartbeats)
    await asyncio.to_thread(warm_up_all)
    state.start()


async def _on_shutdown(ctx: dict[str, Any]) -> None:
    state: WorkerState = ctx["state"]
    await state.stop()


class SlotWorker(Worker):
    """arq's worker, except that when every job slot is busy it starts queued jobs as soon as
    slots free, instead of sleeping out the rest of ``poll_delay``.

    arq stops starting jobs once ``max_jobs`` run and sleeps until its next poll: a worker whose
    jobs each take longer than a few milliseconds then runs at most ``max_jobs`` jobs per
    ``poll_delay`` (200 jobs/s at arq's defaults here), and a queued job waits up to
    ``poll_delay`` after a slot freed. It refills once half the slots are free (each poll reads
    up to a hundred ids of the queue: one per freed slot would cost more than the jobs).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slot_freed = asyncio.Event()
        self._redis_down = False

    def handle_sig(self, signum: signal.Signals) -> None:
        """arq's: cancel the job tasks and the poll loop; and first stop taking jobs (arq's own
        switch), so that a poll loop whose cancellation got lost (one went on for three seconds
        after SIGTERM and started a job its sibling had just handed back, which then waited a
        lease for nobody) takes none and ends at its next iteration."""
        self.allow_pick_jobs = False
        super().handle_sig(signum)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._slot_freed.set()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # the queue holds a job until it finishes: skip the ones running here without asking
        # Redis (arq checks each with two round trips, which every early wake-up would repeat).
        # One id at a time, so that Redis failing half-way gives back the slot arq took for
        # it (arq's own loop would leave it taken, and the worker a job slot short for good).
        for job_id in job_ids:
            if job_id.decode() in self.tasks:
                continue
            if self.job_counter >= self.max_jobs:
                return
            before = self.job_counter
            try:
                await super().start_jobs([job_id])
            except (RedisError, OSError):
                if self.job_counter > before and job_id.decode() not in self.tasks:
                    self.job_counter -= 1
                    self.sem.release()
                raise

    async def _poll_iteration(self) -> None:
        """A poll that rides out a Redis outage: the jobs running here go on (their state is in
        the database), the worker waits for Redis and goes on polling, instead of ending.
        Once the worker is told to stop (``handle_sig``) it raises CancelledError: arq's loop
        ends only on cancellation (or in burst mode), and this one's may have been lost."""
        if not self.allow_pick_jobs:  # told to stop: whatever became of that cancellation
            raise asyncio.CancelledError
        try:
            await self._poll_and_refill()
        except (RedisError, OSError) as exc:
            if not self._redis_down:
                log.warning("Redis is unreachable (%s); running jobs go on, polling again every "
                            "second", type(exc).__name__)
            self._redis_down = True
            await asyncio.sleep(1)
        else:
            if self._redis_down:
                log.warning("Redis is back")
            self._redis_down = False

    async def close(self) -> None:
        """arq's close(), except that it waits for every job task whatever its end: arq gathers
        them without ``return_exceptions``, so a job cancelled by the shutdown (one handing
        itself back to the queue) raised out of close() before on_shutdown ran and before the
        job was handed back, and its row waited a lease to be requeued."""
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        state = self.ctx.get("state") if self.ctx else None
        if state is not None:  # jobs on their way back to the queue
            await asyncio.gather(*state.handing_back, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):  # Redis may be the reason we stop
            await self.pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        with contextlib.suppress(RedisError, OSError):
            await self.pool.aclose(close_connection_pool=True)
        self._pool = None

    async def _poll_and_refill(self) -> None:
        """Poll, then, until this poll's ``poll_delay`` is over, poll again as slots free: when
        every slot is busy, once half of them are free; in burst mode also when the last jobs
        end, so a burst ends with its jobs instead of sleeping out the delay (arq counts the
        running jobs as queued, so its own check only sees the queue empty after a sleep)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.poll_delay_s
        await super()._poll_iteration()
        refill_at = self.max_jobs - max(1, self.max_jobs // 2)  # running jobs
        while self.job_counter >= self.max_jobs or (self.burst and self.job_counter > 0):
            wake_at = refill_at if self.job_counter >= self.max_jobs else self.job_counter - 1
            while self.job_counter > wake_at:
                left = until - loop.time()
                if left <= 0:
                    return  # arq's own poll loop takes it from here, without sleeping
                self._slot_freed.clear()
                try:
                    async with asyncio.timeout(left):
                        await self._slot_freed.wait()
                except TimeoutError:
                    return
            await super()._poll_iteration()


def build_worker(engine: Engine, *, burst: bool = False, max_jobs: int = 10,
                 poll_delay: float = 0.05, handle_signals: bool = True) -> Worker:
    state = WorkerState(engine)
    return SlotWorker(
        functions=[func(run_job, name=ARQ_FUNCTION, max_tries=1)],  # type: ignore[arg-type]
        redis_pool=engine.redis,
        ctx={"state": state, "engine": engine},
        on_startup=_on_startup,
        on_shutdown=_on_shutdown,
        burst=burst,
        max_jobs=max_jobs,
        poll_delay=poll_delay,
        job_timeout=JOB_TIMEOUT,
        keep_result=0,  # results live in our store; arq's copy would only hold memory
        handle_signals=handle_signals,
        health_check_interval=30,
    )


async def run_worker(settings: Settings, redis_url: str, *, max_jobs: int = 10) -> None:
    """Run one worker until stopped, restarting it if its Redis connection drops."""
    stopped = asyncio.Event()  # set by SIGTERM/SIGINT through whichever worker is current
    while not stopped.is_set():
        engine = Engine(settings, redis_url)
        worker = build_worker(engine, max_jobs=max_jobs)
        worker.on_stop = lambda _signal: stopped.set()
        try:
            await worker.async_run()
            return
        except asyncio.CancelledError:  # SIGTERM/SIGINT: arq cancelled its main task
            return
        except (RedisError, OSError) as exc:
            log.warning("worker lost Redis (%s); restarting in 1 s", exc)
            # a signal in this pause reaches the old worker's handler: it must still stop us
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await stopped.wait()
        finally:
            with contextlib.suppress(Exception):
                await worker.close()
            with contextlib.suppress(Exception):
                await engine.close()
