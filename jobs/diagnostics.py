"""Diagnostic job kinds: exercise the engine end to end without touching any domain data.

``diagnostics.noop`` does nothing (the engine's own overhead); ``diagnostics.sleep`` works in
steps, reporting progress, and can warn, fail, or run its steps in a thread, so an operator
(or a test) can watch every part of a job's life on the dashboard.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from jobs.context import JobContext, JobFailed
from jobs.registry import JobKind, Outcome, register
from jobs.status import Status


class NoopParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def noop(ctx: JobContext, params: NoopParams) -> dict[str, Any]:
    return {}


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(10, ge=1, le=10_000)
    step_seconds: float = Field(0.5, ge=0, le=600)
    warn_at: int | None = Field(None, ge=1, description="step after which to add a warning")
    fail_at: int | None = Field(None, ge=1, description="step at which to fail")
    in_thread: bool = Field(False, description="do the steps in a worker thread")
    partial: bool = Field(False, description="finish as partial instead of completed")
    log_steps: bool = Field(False, description="write a log line per step")


def _thread_steps(ctx: JobContext, params: SleepParams) -> int:
    for step in range(1, params.steps + 1):
        deadline = time.monotonic() + params.step_seconds
        while time.monotonic() < deadline:
            ctx.raise_if_cancelled()
            time.sleep(min(0.02, params.step_seconds))
        ctx.run_from_thread(ctx.progress(step, params.steps, f"Step {step} of {params.steps}"))
    return params.steps


async def sleep(ctx: JobContext, params: SleepParams) -> Outcome:
    await ctx.progress(0, params.steps, "Starting")
    if params.in_thread:
        import asyncio

        await asyncio.to_thread(_thread_steps, ctx, params)
    else:
        for step in range(1, params.steps + 1):
            await ctx.sleep(params.step_seconds)
            if params.fail_at == step:
                raise JobFailed(f"Failed on purpose at step {step}")
            await ctx.progress(step, params.steps, f"Step {step} of {params.steps}")
            if params.log_steps:
                await ctx.log(f"Step {step} done")
            if params.warn_at == step:
                await ctx.warn(f"Warning on purpose after step {step}")
    await ctx.log(f"Slept {params.steps} steps")
    status = Status.PARTIAL if params.partial else Status.COMPLETED
    return Outcome(status=status, result={"steps": params.steps})


register(JobKind(name="diagnostics.noop", title="No-op", params_model=NoopParams, func=noop))
register(JobKind(
    name="diagnostics.sleep", title="Sleep", params_model=SleepParams, func=sleep,
    describe=lambda p: f"{p.get('steps')} steps of {p.get('step_seconds')} s",
))
