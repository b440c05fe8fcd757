"""`marketdesk serve`: one command starts everything, demo data the first time, a clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from jobs.prices.universe import WELL_KNOWN_TICKERS
from tests.stack import ROOT, Stack, free_port, listening_sockets


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return "Z" not in open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False


def test_sigterm_stops_everything_within_5_seconds(tmp_path, database) -> None:
    s = Stack(tmp_path / "d", workers=2, database=database).start()
    children = s.child_pids("web.cli worker") + s.child_pids("redis-server")
    assert len(children) == 3, children  # two workers and the embedded Redis
    assert httpx.get(f"{s.url}/healthz").json()["workers"] == 2
    # requests first: the workers run niced (MARKETDESK_WORKER_NICE, 10), web and Redis do not
    assert [os.getpriority(os.PRIO_PROCESS, p) for p in s.child_pids("web.cli worker")] == [10, 10]
    assert os.getpriority(os.PRIO_PROCESS, s.proc.pid) == 0  # type: ignore[union-attr]
    assert os.getpriority(os.PRIO_PROCESS, s.child_pids("redis-server")[0]) == 0
    if os.path.exists("/proc/self/autogroup"):  # each leads its session: its group is niced too
        for pid in s.child_pids("web.cli worker"):
            assert open(f"/proc/{pid}/autogroup").read().split()[-1] == "10"
    job_id = s.submit("diagnostics.sleep", steps=100, step_seconds=0.1)
    s.wait(job_id, {"running"})
    took = s.stop()
    assert took < 5, f"stop took {took:.1f}s; its log:\n{s.log()}"
    deadline = time.monotonic() + 1
    while any(_alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in children if _alive(p)], "processes left behind"
    assert not s.redis_socket.exists()
    assert "marketdesk stopped" in s.log()
    # the interrupted job was handed back on the way out, not left for the lease (30 s) to
    # expire: the next start finishes it at once
    s2 = Stack(tmp_path / "d", workers=1, port=s.port)
    if "MARKETDESK_DATABASE_URL" in s.env:
        s2.env["MARKETDESK_DATABASE_URL"] = s.env["MARKETDESK_DATABASE_URL"]
    with s2:
        job = s2.wait(job_id, timeout=25)
        assert job["status"] == "completed"
        assert any(line["message"] == "Requeued: worker shut down" for line in job["log"]), job["log"]


def _lowered(autogroup_text: str, tmp_path) -> tuple[int, str]:
    """A fresh process's nice and its (stand-in) autogroup file after ``_lower_priority(10)``."""
    group = tmp_path / "autogroup"
    group.write_text(autogroup_text)
    code = (f"import os, web.cli as c; c.AUTOGROUP = {str(group)!r}; c._lower_priority(10); "
            "print(os.getpriority(os.PRIO_PROCESS, 0))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout), group.read_text()


def test_a_worker_niced_in_the_default_autogroup_still_starts(tmp_path) -> None:
    # a process in the boot session's group (a worker started by hand, in a container) reads
    # an empty autogroup file: it is niced and starts; one in its own group nices the group too
    assert _lowered("", tmp_path) == (10, "")
    assert _lowered("/autogroup-85 nice 0\n", tmp_path) == (10, "10")
    assert _lowered("/autogroup-85 nice 15\n", tmp_path) == (10, "/autogroup-85 nice 15\n")


@contextlib.contextmanager
def serving(data_dir, port: int) -> Iterator[list[str]]:
    """`marketdesk serve` (demo included) until it says it is running; its lines so far."""
    env = {**os.environ, "MARKETDESK_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "web.cli", "serve", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "marketdesk is running at" in line:
                break
        yield lines
    finally:
        proc.terminate()
        proc.wait(10)


def test_first_serve_seeds_demo_data_once(tmp_path) -> None:
    port = free_port()
    with serving(tmp_path / "demo", port) as lines:
        assert f"http://127.0.0.1:{port}/" in lines[-1]
        assert any("seeded demo data" in line for line in lines)
        # the default: two web processes on the port where there are two cores or more
        webs = min(2, os.cpu_count() or 1)
        assert (f"{webs} web processes" in lines[-1]) == (webs > 1), lines[-1]
        deadline = time.monotonic() + 15
        while listening_sockets(port) < webs and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listening_sockets(port) == webs
        coverage = httpx.get(f"http://127.0.0.1:{port}/api/prices/coverage").json()["coverage"]
        tickers = {c["symbol"]: c for c in coverage if c["symbol"] in WELL_KNOWN_TICKERS}
        assert len(tickers) == 20  # (the symbols board's demo adds its own, SPX and QQQ)
        assert all(c["days_held"] > 480 and c["gaps"] == 0 for c in tickers.values())
        jobs = httpx.get(f"http://127.0.0.1:{port}/api/jobs").json()["jobs"]
        assert len(jobs) >= 3 and any(j["warnings"] for j in jobs)
        assert {j["status"] for j in jobs} >= {"completed", "partial", "failed"}
    with serving(tmp_path / "demo", port) as lines:  # a second start does not seed again
        assert not any("seeded demo data" in line for line in lines)


def _web_lags(s: Stack) -> set[str]:
    """The web processes whose event-loop lag the latest health sample holds (one per process,
    named web:<host>:<pid>)."""
    sample = httpx.get(f"{s.url}/api/health", timeout=5).json().get("latest_sample") or {}
    lags = (sample.get("data") or {}).get("lags") or {}
    return {name for name in lags if name.startswith("web:")}


def _wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    return check()


def test_serve_web_2_shares_one_port_and_replaces_a_lost_web_process(tmp_path) -> None:
    s = Stack(tmp_path / "d", web=2, env={"MARKETDESK_HEALTH_SAMPLE_SECONDS": "1"}).start()
    replaced: list[int] = []
    try:
        (child,) = s.child_pids("web.cli web")
        # both processes run (each reports its loop lag) behind the one port
        lags = _wait_for(lambda: (lambda found: found if len(found) == 2 else None)(_web_lags(s)))
        assert lags and {int(name.rsplit(":", 1)[1]) for name in lags} == {s.proc.pid, child}, lags
        # whichever process answers, /logs shows both web processes' lines (each logs its
        # health at start), not only its own
        def web_sources() -> set[str] | None:
            lines = httpx.get(f"{s.url}/api/logs", params={"limit": 1000}).json()["lines"]
            found = {line["source"] for line in lines if line["source"].startswith("web:")}
            return found if len(found) == 2 else None
        for _ in range(4):  # new connections: the port hands them to either process
            assert _wait_for(web_sources), s.log()
        os.kill(child, signal.SIGKILL)
        # the port keeps answering on fresh connections while the lost one is replaced
        for _ in range(30):
            with httpx.Client(timeout=5) as client:
                assert client.get(f"{s.url}/healthz").status_code == 200
        replaced = _wait_for(lambda: [p for p in s.child_pids("web.cli web") if p != child])
        assert len(replaced) == 1, s.log()
        assert _wait_for(lambda: str(replaced[0]) in " ".join(_web_lags(s))), _web_lags(s)
        assert "web process" in s.log() and "exited with" in s.log()
    finally:
        s.stop()
    assert replaced and not _alive(replaced[0]), "a web process was left behind"


def test_serve_web_2_leaves_no_process_behind_when_killed(tmp_path) -> None:
    """`serve` killed with -9 cannot stop its children: the extra web process and the workers
    notice their supervisor is gone and stop, and the kernel stops the embedded Redis."""
    s = Stack(tmp_path / "d", web=2).start()
    (child,) = s.child_pids("web.cli web")
    others = s.child_pids("redis-server") + s.child_pids("web.cli worker")
    assert s.proc is not None
    s.proc.kill()
    s.proc.wait(5)
    try:
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in [child, *others]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), f"the web process outlived its supervisor; log:\n{s.log()}"
        left = [p for p in others if _alive(p)]
        assert len(others) == 2 and not left, (
            f"Redis or a worker ({left} of {others}) outlived it; log:\n{s.log()}")
    finally:  # whatever is left, so that a failure leaves nothing running
        for pid in [child, *others]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
