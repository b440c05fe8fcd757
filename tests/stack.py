"""A real marketdesk stack for tests, e2e and benchmarks: `marketdesk serve` in a child process.

Real Redis (the embedded one serve starts, or one given), real arq workers, real SQLite
(or a fresh PostgreSQL database), real uvicorn. Nothing of ours is faked.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = {"completed", "partial", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_base_url() -> str | None:
    return os.environ.get("MARKETDESK_TEST_POSTGRES_URL") or None


def create_postgres_database(base_url: str) -> str:
    """A fresh, empty database on the configured server; its URL."""
    import asyncpg

    name = f"marketdesk_test_{uuid.uuid4().hex[:12]}"
    dsn = base_url.replace("postgresql+asyncpg://", "postgresql://")

    async def create() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    head, _, _ = base_url.rpartition("/")
    return f"{head}/{name}"


def listening_sockets(port: int) -> int:
    """How many sockets listen on ``port`` (each web process of `serve --web N` has its own)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


class Stack:
    """`marketdesk serve` (or `web` + `worker` parts) on a free port with its own data dir."""

    def __init__(self, data_dir: Path, *, workers: int = 1, env: dict[str, str] | None = None,
                 database: str = "sqlite", port: int | None = None, max_jobs: int = 10,
                 demo: bool = False, web: int = 1) -> None:
        self.demo = demo
        self.web = web
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.workers = workers
        self.max_jobs = max_jobs
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "MARKETDESK_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.env.pop("MARKETDESK_DATABASE_URL", None) if database == "sqlite" else None
        if database == "postgres":
            base = postgres_base_url()
            assert base, "MARKETDESK_TEST_POSTGRES_URL is not set"
            self.env["MARKETDESK_DATABASE_URL"] = create_postgres_database(base)
        self.database = database
        self.log_path = self.data_dir / "serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0, wait_workers: bool = True) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "web.cli", "serve", *([] if self.demo else ["--no-demo"]),
             "--port", str(self.port),
             "--workers", str(self.workers), "--max-jobs", str(self.max_jobs),
             "--web", str(self.web)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                health = httpx.get(f"{self.url}/healthz", timeout=2).json()
                if health.get("redis") == "ok" and (health["workers"] >= self.workers
                                                    or not wait_workers or self.workers == 0) \
                        and listening_sockets(self.port) >= self.web:
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"stack did not come up in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM, as an operator would; returns the seconds it took."""
        start = time.monotonic()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return time.monotonic() - start

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def child_pids(self, needle: str) -> list[int]:
        """Pids of the stack's child processes whose command line contains ``needle``."""
        assert self.proc is not None
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and needle in cmdline:
                pids.append(int(entry.name))
        return pids

    @property
    def redis_socket(self) -> Path:
        return self.data_dir.resolve() / "redis.sock"

    # -- API helpers ----------------------------------------------------------------------
    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)

    def submit(self, kind: str, **params: Any) -> str:
        r = httpx.post(f"{self.url}/api/jobs", json={"kind": kind, "params": params}, timeout=10)
        assert r.status_code == 202, r.text
        return str(r.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/api/jobs/{job_id}", timeout=10)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(self, job_id: str, statuses: set[str] | None = None, timeout: float = 30.0,
             **match: Any) -> dict[str, Any]:
        """Until the job reaches one of ``statuses`` (default: any terminal one)."""
        statuses = statuses or TERMINAL
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses and all(job.get(k) == v for k, v in match.items()):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} not in {statuses} after {timeout}s: {job}\n{self.log()}")

    def follow(self, job_id: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Every state of the job as the JSON event stream reports it, until it ends."""
        states: list[dict[str, Any]] = []
        url = f"{self.url}/events?topic=job:{job_id}&format=json"
        deadline = time.monotonic() + timeout
        with httpx.stream("GET", url, timeout=httpx.Timeout(5, read=timeout)) as resp:
            for event in sse_events(resp):
                if event.get("event") == "job":
                    state = json.loads(event["data"])
                    states.append(state)
                    if state["status"] in TERMINAL:
                        return states
                if time.monotonic() > deadline:
                    break
        raise AssertionError(f"job {job_id} did not end in {timeout}s: {states[-1:]}")


def follow_new(stack: Stack, start: Any, timeout: float = 60.0) -> tuple[str, list[dict[str, Any]]]:
    """Subscribe to every job's events, then call ``start()`` (which returns a job id), and
    collect that job's states from its very first one until it ends."""
    url = f"{stack.url}/events?topic=jobs&format=json"
    states: list[dict[str, Any]] = []
    job_id = None
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", url, timeout=httpx.Timeout(5, read=timeout)) as resp:
        for event in sse_events(resp):
            if event.get("event") == "jobs" and job_id is None:
                job_id = start()  # subscribed: nothing of the new job can be missed
            elif event.get("event") == "job" and job_id:
                state = json.loads(event["data"])
                if state["id"] == job_id:
                    states.append(state)
                    if state["status"] in TERMINAL:
                        return job_id, states
            if time.monotonic() > deadline:
                break
    raise AssertionError(f"job {job_id} did not end in {timeout}s: {states[-1:]}")


def sse_events(response: httpx.Response) -> Iterator[dict[str, str]]:
    """Parse a text/event-stream response into {event, data, id} dicts (comments as ':')."""
    event: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if event:
                yield event
            event = {}
            continue
        if line.startswith(":"):
            yield {":": line[1:].strip()}
            continue
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        event[key] = f"{event[key]}\n{value}" if key in event else value


def cancel_latency(job: dict[str, Any]) -> float:
    """Seconds from the cancel request to the job's end, as the server recorded them."""
    from datetime import datetime

    asked = datetime.fromisoformat(job["cancel_requested_at"])
    return (datetime.fromisoformat(job["finished_at"]) - asked).total_seconds()


def statuses_of(states: list[dict[str, Any]]) -> list[str]:
    """The distinct statuses in order of first appearance."""
    out: list[str] = []
    for s in states:
        if not out or out[-1] != s["status"]:
            out.append(s["status"])
    return out
