"""What a job function is handed: progress, warnings, log lines, status, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any

from jobs import store
from jobs.models import Job
from jobs.redact import redact
from jobs.status import ACTIVE_STATUSES, Status


class JobCancelled(Exception):
    """Raised inside a job when its cancellation was requested."""


class JobFailed(Exception):
    """Raise to fail a job with a message meant for the operator."""


class JobContext:
    def __init__(self, engine: Any, job: Job) -> None:
        self.engine = engine
        self.job_id = job.id
        self.kind = job.kind
        self.attempt = job.attempts
        self.status = Status(job.status)
        self.warnings: list[str] = list(job.warnings or [])
        self.progress_done = job.progress_done
        self.progress_total = job.progress_total
        self.phase = job.phase
        self._cancel = threading.Event()
        self._cancel_async = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._progress_written = 0.0
        # the task running the job function: a cancel it has not obeyed after the grace period
        # cancels it (``forced``); code in a thread is not stopped that way, it checks itself
        self.stop_after_grace: asyncio.Task[Any] | None = None
        self.forced = False

    # -- cancellation -------------------------------------------------------------------------
    def request_cancel(self) -> None:
        """Called by the worker (event loop thread) when a cancel arrives."""
        if self._cancel.is_set():
            return
        self._cancel.set()
        self._cancel_async.set()
        self._loop.call_later(self.engine.settings.cancel_grace_seconds, self._force_stop)

    def _force_stop(self) -> None:
        task = self.stop_after_grace
        if task is not None and not task.done():
            self.forced = True
            task.cancel()

    @property
    def cancelled(self) -> bool:
        """Safe to read from any thread."""
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled()

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking at once (with JobCancelled) if the job is cancelled."""
        try:
            async with asyncio.timeout(seconds):
                await self._cancel_async.wait()
        except TimeoutError:
            return
        raise JobCancelled()

    async def wait_cancelled(self) -> None:
        await self._cancel_async.wait()

    # -- reporting ----------------------------------------------------------------------------
    async def _write(self, values: dict[str, Any]) -> None:
        job = await store.update_job(self.engine.db, self.job_id, values,
                                     only_from=[s.value for s in ACTIVE_STATUSES])
        if job is not None:
            await self.engine.publish_job(job)

    async def progress(self, done: int, total: int | None = None, phase: str | None = None, *,
                       min_interval: float = 0.0) -> None:
        """Record progress. With ``min_interval``, a step coming sooner than that after the last
        one written is only kept in memory (the first, the last and every phase change are
        always written), so a fast loop does not write and publish thousands of rows."""
        changed_phase = phase is not None and phase[:500] != self.phase
        self.progress_done = done
        if total is not None:
            self.progress_total = total
        if phase is not None:
            self.phase = phase[:500]
        now = time.monotonic()
        final = self.progress_total and done >= self.progress_total
        if min_interval and not (changed_phase or final) and now - self._progress_written < min_interval:
            return
        self._progress_written = now
        await self._write({"progress_done": self.progress_done,
                           "progress_total": self.progress_total, "phase": self.phase})

    async def warn(self, message: str) -> None:
        message = redact(message)
        if message in self.warnings:
            return
        self.warnings.append(message)
        await self._write({"warnings": list(self.warnings)})
        await self.log(message, level="warning")

    async def log(self, message: str, level: str = "info") -> None:
        await self.engine.log(self.job_id, message, level)

    async def set_status(self, status: Status, phase: str | None = None) -> None:
        """Move to another working status (e.g. downloading_data -> running)."""
        values: dict[str, Any] = {}
        if phase is not None:
            self.phase = phase[:500]
            values["phase"] = self.phase
        job = await store.transition(self.engine.db, self.job_id, status, values,
                                     only_from=[self.status])
        if job is None:
            current = await store.get_job(self.engine.db, self.job_id)
            if current is not None and current.status == Status.CANCELLED:
                raise JobCancelled()
            raise RuntimeError(f"job {self.job_id} could not move from {self.status} to {status}")
        self.status = status
        await self.engine.publish_job(job)

    # -- from a worker thread -----------------------------------------------------------------
    def run_from_thread(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run one of the coroutines above from code running in a thread."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)


async def cancellable(ctx: JobContext, coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro``, abandoning it with JobCancelled as soon as the job is cancelled."""
    ctx.raise_if_cancelled()
    work = asyncio.ensure_future(coro)
    stop = asyncio.ensure_future(ctx.wait_cancelled())
    try:
        await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not work.done():
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        raise JobCancelled()
    return work.result()
