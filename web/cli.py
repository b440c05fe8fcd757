"""`marketdesk`: serve (everything in one command), web, worker, migrate, and each domain's verbs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from jobs.settings import Settings, SettingsError, load_settings

log = logging.getLogger("marketdesk")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        sys.exit(str(exc))


def _run_async(coro: Any) -> Any:
    """asyncio.run on uvloop (uvicorn runs the web on it too), plain asyncio where it is missing."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        return asyncio.run(coro)
    return uvloop.run(coro)


def _require_redis(settings: Settings) -> str:
    if not settings.redis_url:
        sys.exit("MARKETDESK_REDIS_URL is not set: point it at the shared Redis "
                 "(or use `marketdesk serve`, which starts an embedded one)")
    return settings.redis_url


def _shared_socket(host: str, port: int) -> Any:
    """A listening socket with SO_REUSEPORT: every web process binds its own on the same port and
    the kernel spreads new connections over them (a hash per connection, not whichever process
    wakes first)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _run_web(settings: Settings, redis_url: str, host: str, port: int,
             on_started: Any = None, reuse_port: bool = False) -> None:
    import uvicorn

    from web.app import create_app
    from web.server import protocol_with_head_timeout

    config = uvicorn.Config(create_app(settings, redis_url, bind_host=host), host=host, port=port,
                            log_level="warning", timeout_graceful_shutdown=2,
                            timeout_keep_alive=5, lifespan="on",
                            http=protocol_with_head_timeout(settings.header_timeout_seconds))
    server = uvicorn.Server(config)
    sockets = [_shared_socket(host, port)] if reuse_port else None
    if on_started:
        def watch() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.02)
            if server.started:
                on_started()
        threading.Thread(target=watch, daemon=True).start()
    server.run(sockets=sockets)


def cmd_migrate(args: argparse.Namespace) -> None:
    from jobs.migrate import upgrade

    settings = _settings()
    upgrade(settings.resolved_database_url)
    print("database is at the latest schema")


def _exit_with_parent() -> None:
    """Under `marketdesk serve` (a worker, an extra web process): stop like on SIGTERM if the
    supervisor vanished (killed with -9, it cannot stop us), instead of running on unwatched."""
    parent = os.environ.get("MARKETDESK_PARENT_PID")
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1)
        log.warning("supervisor %s is gone; stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def cmd_web(args: argparse.Namespace) -> None:
    settings = _settings()
    if args.reuse_port:  # one of `serve --web N`'s processes: log like the serve process does
        logging.basicConfig(level=logging.INFO, format="%(asctime)s web %(levelname)s %(message)s")
    _exit_with_parent()
    _run_web(settings, _require_redis(settings), args.host, args.port, reuse_port=args.reuse_port)


AUTOGROUP = "/proc/self/autogroup"


def _lower_priority(nice: int) -> None:
    """Run at ``nice`` or lower (never raises a priority set from outside): requests first, jobs
    in the CPU they leave. With Linux's autogroup scheduling a process that leads its own session
    (as serve's children do) is weighed against other sessions by its session's nice, not its
    own: both are set. A process still in the boot session's default group (a worker started by
    hand, or in a container) reads an empty file there and is weighed by its nice alone."""
    os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), nice))
    try:
        with open(AUTOGROUP) as f:  # "/autogroup-85 nice 0"; empty in the default group
            words = f.read().split()
        if words and nice > int(words[-1]):
            with open(AUTOGROUP, "w") as f:
                f.write(str(nice))
    except (OSError, ValueError):  # no autogroup scheduling here: the nice level is enough
        pass


def _full_priority(pid: int) -> None:
    """Give a child stopping its normal priority back where we may (root, CAP_SYS_NICE), so
    that on a busy machine a niced worker's clean shutdown is not starved past the grace."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, 0)
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as f:
        f.write("0")


def cmd_worker(args: argparse.Namespace) -> None:
    from jobs.worker import run_worker

    settings = _settings()
    url = _require_redis(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    logging.getLogger("arq").setLevel(logging.WARNING)
    _exit_with_parent()
    _lower_priority(settings.worker_nice)
    try:
        _run_async(run_worker(settings, url, max_jobs=args.max_jobs))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass


class Children:
    """Child processes of `serve` (workers, extra web processes), restarted if one dies while we
    run."""

    def __init__(self, what: str, count: int, env: dict[str, str], args: list[str]) -> None:
        self.what = what
        self.count = count
        self.env = env
        self.args = args
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stopping = threading.Event()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "web.cli", *self.args],
                                env=self.env, start_new_session=True)

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.count)]
        threading.Thread(target=self._supervise, daemon=True).start()

    def _supervise(self) -> None:
        while not self.stopping.wait(1.0):
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None and not self.stopping.is_set():
                    log.warning("%s %s exited with %s; starting another", self.what, proc.pid,
                                proc.returncode)
                    self.procs[i] = self._spawn()

    def stop(self, timeout: float = 3.0) -> None:
        self.stopping.set()
        for proc in self.procs:
            if proc.poll() is None:
                _full_priority(proc.pid)  # a niced worker hands its jobs back in time
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def cmd_serve(args: argparse.Namespace) -> None:
    from jobs.migrate import upgrade
    from jobs.redis_embedded import EmbeddedRedis

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = _settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    embedded = None
    redis_url = settings.redis_url
    if not redis_url:
        embedded = EmbeddedRedis(data_dir, stop_with_parent=True)
        redis_url = embedded.start()
    env = {**os.environ, "MARKETDESK_REDIS_URL": redis_url, "MARKETDESK_DATA_DIR": str(data_dir),
           "MARKETDESK_PARENT_PID": str(os.getpid())}
    workers = Children("worker", args.workers, env, ["worker", "--max-jobs", str(args.max_jobs)])
    webs = Children("web process", max(0, args.web - 1), env,
                    ["web", "--host", args.host, "--port", str(args.port), "--reuse-port"])
    # uvicorn re-raises the signal that stopped it once it has shut down; make SIGTERM end
    # in our `finally` (like Ctrl-C does) rather than kill us before we stop our children
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        if not args.no_demo:
            from jobs.demo import seed_if_first_run

            if asyncio.run(seed_if_first_run(settings)):
                print("seeded demo data (20 tickers, two years of daily bars, a few jobs)")
        workers.start()
        webs.start()

        def started() -> None:
            print(f"marketdesk is running at http://{args.host}:{args.port}/  "
                  f"({args.workers} worker{'s' if args.workers != 1 else ''}, "
                  + (f"{args.web} web processes, " if args.web > 1 else "") +
                  f"Redis {'embedded' if embedded else redis_url}, data in {data_dir})",
                  flush=True)

        _run_web(settings, redis_url, args.host, args.port, on_started=started,
                 reuse_port=args.web > 1)
    finally:
        # a second Ctrl-C or SIGTERM must not cut the clean-up short and leave children behind
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            webs.stop()
            workers.stop()
        finally:
            if embedded:
                embedded.stop()
        print("marketdesk stopped", flush=True)


def default_web_processes() -> int:
    """Two web processes where there are two cores or more: one loop answers on about one
    core, and with the workers niced the second answers about twice the requests
    (bench/results/request-path.md); more would mostly add memory and stream readers."""
    return min(2, os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marketdesk", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate, start Redis (embedded), workers and the web")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--max-jobs", type=int, default=10, help="jobs at once per worker")
    serve.add_argument("--web", type=int, default=default_web_processes(), metavar="N",
                       help="web processes sharing the port (SO_REUSEPORT; default: 2 where "
                            "there are 2 or more cores, else 1)")
    serve.add_argument("--no-demo", action="store_true", help="do not seed demo data")
    serve.set_defaults(func=cmd_serve)

    web = sub.add_parser("web", help="the web process only (MARKETDESK_REDIS_URL required)")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8000)
    web.add_argument("--reuse-port", action="store_true",
                     help="bind with SO_REUSEPORT, beside other web processes on the same port")
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser("worker", help="one worker process (MARKETDESK_REDIS_URL required)")
    worker.add_argument("--max-jobs", type=int, default=10)
    worker.set_defaults(func=cmd_worker)

    sub.add_parser("migrate", help="bring the database to the latest schema").set_defaults(
        func=cmd_migrate)

    from jobs.domain import add_cli

    add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    from jobs.redact import install

    install()  # no secret in any log line of any process started here
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
