"""marketdesk as production runs it: Redis, a worker and the web as separate processes.

`tests.stack.Stack` runs `marketdesk serve`, which owns its worker and Redis; a test that
restarts the web process alone needs them apart. This starts an embedded Redis, then
`python -m web.cli migrate`, `... worker` and `... web --port P` as children (their output in
``<data dir>/*.log``), and can stop and start the web process again on the same port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from jobs.redis_embedded import EmbeddedRedis
from tests.stack import ROOT, free_port


class SplitStack:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.redis = EmbeddedRedis(self.data_dir / "redis")
        self.extra_env = env or {}
        self.env: dict[str, str] = {}
        self.worker: subprocess.Popen[bytes] | None = None
        self.web: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        out = open(self.data_dir / log, "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(out)
        return subprocess.Popen([sys.executable, "-m", "web.cli", *args], cwd=ROOT, env=self.env,
                                stdout=out, stderr=subprocess.STDOUT)

    def start(self, timeout: float = 60.0) -> SplitStack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            redis_url = self.redis.start()
            self.env = {**os.environ, "MARKETDESK_DATA_DIR": str(self.data_dir),
                        "MARKETDESK_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1",
                        **self.extra_env}
            self.env.pop("MARKETDESK_DATABASE_URL", None)  # SQLite in the data dir
            subprocess.run([sys.executable, "-m", "web.cli", "migrate"], cwd=ROOT, env=self.env,
                           check=True, capture_output=True, timeout=timeout)
            self.worker = self._spawn("worker", log="worker.log")
            self.start_web(timeout, wait_workers=True)
        except BaseException:
            self.stop()
            raise
        return self

    def start_web(self, timeout: float = 60.0, wait_workers: bool = False) -> float:
        """Start the web process on our port; the seconds until it answered /healthz."""
        began = time.monotonic()
        self.web = self._spawn("web", "--port", str(self.port), log="web.log")
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.web.poll() is not None:
                raise RuntimeError(f"web exited with {self.web.returncode}:\n{self.log('web.log')}")
            if self.worker is not None and self.worker.poll() is not None:
                raise RuntimeError(f"worker exited with {self.worker.returncode}:\n"
                                   f"{self.log('worker.log')}")
            try:
                health = httpx.get(f"{self.url}/healthz", timeout=2).json()
                if health.get("redis") == "ok" and (health.get("workers") or not wait_workers):
                    return time.monotonic() - began
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"web did not come up in {timeout}s:\n{self.log('web.log')}")

    def stop_web(self, timeout: float = 10.0) -> int:
        """SIGTERM the web process, as an operator (or a deploy) would; its exit code."""
        return _terminate(self.web, timeout)

    def stop(self) -> None:
        _terminate(self.web)
        _terminate(self.worker)
        self.redis.stop()
        for out in self._logs:
            out.close()
        self._logs.clear()

    def log(self, name: str) -> str:
        try:
            return (self.data_dir / name).read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> SplitStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> int:
    if proc is None:
        return 0
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
