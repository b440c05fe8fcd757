"""A cancel is never lost: Python 3.11's ``asyncio.wait_for`` returns the awaited call's result
and drops a cancel that comes in the loop pass where that call completes. A background loop
that lost its cancel that way never stopped (the web's shutdown then hung: seen with a second
app in one process, one stop in five). Our timed waits use ``asyncio.timeout``, which keeps it;
ruff bans ``asyncio.wait_for`` in ``jobs/`` and ``web/`` (pyproject's TID251)."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from jobs.engine import cancel_until_done, run_forever
from jobs.ops import health


async def cancel_as_it_completes(make: Callable[[asyncio.Future[None]], Coroutine[Any, Any, Any]]
                                 ) -> asyncio.Task[Any]:
    """Run ``make(call)`` until it waits on ``call``; then complete the call and cancel the
    task in the same loop pass."""
    call: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(make(call))
    for _ in range(5):
        await asyncio.sleep(0)
    call.set_result(None)
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    return task


async def test_a_timed_check_keeps_a_cancel_that_comes_as_its_call_completes() -> None:
    task = await cancel_as_it_completes(lambda call: health._timed(call, 1.0))
    assert task.done() and task.cancelled()


async def test_a_monitor_loop_stops_when_cancelled_as_its_check_completes() -> None:
    calls = 0

    def step_on(call: asyncio.Future[None]) -> Callable[[], Coroutine[Any, Any, Any]]:
        async def check() -> None:  # as the operations monitor's: a timed ping
            nonlocal calls
            calls += 1
            await health._timed(call if calls == 1 else asyncio.sleep(0), 1.0)
        return check

    task = await cancel_as_it_completes(
        lambda call: run_forever(step_on(call), 0.05, logging.getLogger("t")))
    try:
        assert task.done(), "the loop lost its cancel and went on"
        assert task.cancelled()
    finally:
        task.cancel()
    assert calls == 1


async def test_the_race_above_loses_the_cancel_through_wait_for_on_python_3_11() -> None:
    """What the tests above guard against, shown: the same race through ``asyncio.wait_for``
    (3.12 rewrote it on ``asyncio.timeout``; there the ban is belt and braces)."""

    async def with_wait_for(call: asyncio.Future[None]) -> None:
        await asyncio.wait_for(call, 1.0)
    task = await cancel_as_it_completes(with_wait_for)
    lost = task.done() and not task.cancelled()
    assert lost == (sys.version_info < (3, 12))


async def test_a_stop_ends_tasks_that_swallow_a_cancel_and_leaves_their_errors_retrieved(
        caplog: Any) -> None:
    """Whatever a library loses, a stop ends: the web's monitor, its event hub and the worker all
    stop through ``cancel_until_done``, which cancels what is still running again."""
    swallowed = 0

    async def swallows_first_cancel() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 1:
                    raise

    async def fails() -> None:
        raise RuntimeError("boom")

    tasks = [asyncio.ensure_future(swallows_first_cancel()), asyncio.ensure_future(fails()), None]
    await asyncio.sleep(0)
    async with asyncio.timeout(3):
        await cancel_until_done(tasks, again_every=0.05)
    assert swallowed == 2 and tasks[0].cancelled()
    assert isinstance(tasks[1].exception(), RuntimeError)
    del tasks
    gc.collect()
    assert "exception was never retrieved" not in caplog.text
