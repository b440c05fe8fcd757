"""No job is lost: a killed worker's job is requeued (or failed), a wiped queue is refilled."""

from __future__ import annotations

import os
import signal
import time

import httpx
import redis

from tests.stack import Stack

FAST = {"MARKETDESK_LEASE_SECONDS": "2", "MARKETDESK_HEARTBEAT_SECONDS": "0.3",
        "MARKETDESK_RECONCILE_SECONDS": "0.3"}


def _kill_worker(s: Stack) -> None:
    pids = s.child_pids("web.cli worker")
    assert pids, "no worker process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def test_job_of_a_killed_worker_is_requeued_and_completes(make_stack) -> None:
    s = make_stack(env=FAST)
    job_id = s.submit("diagnostics.sleep", steps=6, step_seconds=0.5)
    s.wait(job_id, {"running"})
    _kill_worker(s)  # serve's supervisor starts another worker
    job = s.wait(job_id, timeout=30)
    assert job["status"] == "completed"
    assert job["attempts"] == 2
    assert any(line["message"].startswith("Requeued: worker lost") for line in job["log"])


def test_job_of_a_killed_worker_fails_when_attempts_are_used_up(make_stack) -> None:
    s = make_stack(env={**FAST, "MARKETDESK_MAX_ATTEMPTS": "1"})
    job_id = s.submit("diagnostics.sleep", steps=20, step_seconds=0.5)
    s.wait(job_id, {"running"})
    _kill_worker(s)
    job = s.wait(job_id, timeout=30)
    assert job["status"] == "failed"
    assert job["error"] == "worker lost (after 1 attempts)"


def test_pending_job_whose_queue_entry_vanished_is_requeued(make_stack) -> None:
    s = make_stack(env=FAST, max_jobs=1)
    blocker = s.submit("diagnostics.sleep", steps=200, step_seconds=0.1)
    s.wait(blocker, {"running"})
    waiting = s.submit("diagnostics.noop")
    time.sleep(0.3)
    assert s.job(waiting)["status"] == "pending"
    redis.Redis(unix_socket_path=str(s.redis_socket)).flushall()  # Redis loses everything
    httpx.post(f"{s.url}/api/jobs/{blocker}/cancel")
    job = s.wait(waiting, timeout=30)
    assert job["status"] == "completed"
    assert any(line["message"] == "Requeued: its queue entry was lost" for line in job["log"])
