"""Shared helpers for the benchmarks: statistics, markdown tables, process accounting, shutdown.

Not a benchmark itself. Each bench script puts the project root on sys.path and imports this
module from its own folder.
"""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import sys
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- statistics -------------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    k = (len(data) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def ms(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "—"
    return f"{seconds * 1000:.1f}"


def latency_cells(samples: Sequence[float]) -> list[str]:
    """p50, p95, p99, max in milliseconds."""
    return [ms(percentile(samples, 50)), ms(percentile(samples, 95)), ms(percentile(samples, 99)),
            ms(max(samples) if samples else float("nan"))]


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for row in cells[1:]:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(out)


def machine_line() -> str:
    return (f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


# -- processes (Linux /proc) ------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # the command name may hold spaces and parentheses: split after the last ')'
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by one process (0 if it is gone)."""
    try:
        f = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return 0.0
    return (int(f[11]) + int(f[12])) / CLK_TCK


def sched_seconds(pid: int) -> tuple[float, float]:
    """(on-CPU, runnable-but-waiting-for-a-CPU) seconds of a process's main thread so far."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            run_ns, wait_ns, _ = f.read().split()
    except (FileNotFoundError, ValueError):
        return 0.0, 0.0
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, grandchildren, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except FileNotFoundError:
        return "?"
    if not args:
        return "?"
    if "redis-server" in args[0]:
        return "redis-server"
    if "web.cli" in args:
        i = args.index("web.cli")
        return "marketdesk " + (args[i + 1] if len(args) > i + 1 else "")
    return Path(args[0]).name


class CpuMeter:
    """CPU seconds used by a set of processes between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.waited: dict[str, float] = {}  # main thread runnable but off-CPU (machine busy)
        self._wait0: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._wait0 = {name: sched_seconds(pid)[1] for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        self.used = {name: cpu_seconds(pid) - self.before.get(name, 0.0)
                     for name, pid in self.pids.items()}
        self.waited = {name: sched_seconds(pid)[1] - self._wait0.get(name, 0.0)
                       for name, pid in self.pids.items()}
        return self.used


def stack_processes(serve_pid: int) -> dict[str, int]:
    """Name → pid for a `marketdesk serve` tree (the web runs in the serve process itself)."""
    out = {"web (serve)": serve_pid}
    counts: dict[str, int] = {}
    for pid in descendants(serve_pid):
        name = proc_name(pid)
        counts[name] = counts.get(name, 0) + 1
        out[name if counts[name] == 1 else f"{name} #{counts[name]}"] = pid
    return out


# -- running ----------------------------------------------------------------------------------
def wait_answers(url: str, seconds: float = 20.0) -> bool:
    """Wait until ``url`` answers 200 (a server this script started); whether it did."""
    import time

    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False



def sigterm_as_exit() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every `finally` stops what the bench started."""
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run on uvloop when it is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


def raise_nofile(wanted: int) -> tuple[int, int]:
    """Raise the soft open-files limit towards ``wanted``; returns (soft, hard) after."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- profiling (optional: py-spy on PATH, or through uvx) ---------------------------------------
def py_spy_command() -> list[str] | None:
    import shutil

    if shutil.which("py-spy"):
        return ["py-spy"]
    if shutil.which("uvx"):
        return ["uvx", "py-spy"]
    return None


def py_spy_start(pid: int, out: Path, seconds: float, rate: int = 200) -> Any:
    """Sample ``pid`` for ``seconds`` into a collapsed-stack file; the Popen, or None."""
    import subprocess

    cmd = py_spy_command()
    if cmd is None:
        print("# py-spy not found (pip install py-spy, or have uvx): no profile", flush=True)
        return None
    return subprocess.Popen([*cmd, "record", "-p", str(pid), "-d", str(max(1, int(seconds))),
                             "-r", str(rate), "-f", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# py-spy counts a thread blocked in these as busy; they are waiting, not working
# (a "|" joins parts that must all be in the leaf frame)
_IDLE_LEAVES = ("_serve (|/jobs/db.py:", "_worker (|concurrent/futures/thread.py:",
                "threading.py:327)", "threading.py:331)",
                "(selectors.py", "select (", "_supervise (web/cli.py")


def summarize_py_spy(path: Path, top: int = 30) -> str:
    """Inclusive and own share of samples per function, from a py-spy raw (collapsed) file."""
    import re
    from collections import Counter

    frame_re = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        if any(all(part in frames[-1] for part in idle.split("|")) for idle in _IDLE_LEAVES):
            continue
        names = []
        for frame in frames:
            m = frame_re.match(frame)
            where = m.group(2).split("site-packages/")[-1].replace(str(ROOT) + "/", "") if m else ""
            names.append(f"{m.group(1)} ({where})" if m else frame)
        total += int(n)
        for name in set(names):
            inclusive[name] += int(n)
        own[names[-1]] += int(n)
    if not total:
        return "(no busy samples)"
    lines = [f"{total} busy samples; inclusive share (top {top}):"]
    lines += [f"{100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    lines += ["own share (top 15):"]
    lines += [f"{100 * c / total:5.1f}%  {name}" for name, c in own.most_common(15)]
    return "\n".join(lines)


def run_with_stack(stack: Any, work: Any, banner: str = "") -> None:
    """Start ``stack``, run ``work()``, and stop everything it started, also on Ctrl-C."""
    interrupted = False
    try:
        stack.start()
        print(f"# stack up at {stack.url}{banner}", flush=True)
        work()
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        left = stop_stack(stack, interrupted)
        if left:
            print(f"# stopped what the stack left behind: {', '.join(left)}", file=sys.stderr)


def stop_stack(stack: Any, interrupted: bool = False) -> list[str]:
    """Stop a tests.stack.Stack and make sure nothing it started outlives it.

    After a Ctrl-C the serve process got the SIGINT too and is already shutting down: give it
    time first, since a SIGTERM in the middle of its cleanup can cut it short. Then stop any
    child it left behind (by pid, recorded before the stop), e.g. its embedded redis-server,
    which runs in its own session. Returns what had to be stopped by hand.
    """
    import signal as _signal
    import time as _time

    proc = getattr(stack, "proc", None)
    if proc is None:
        return []
    children = {pid: proc_name(pid) for pid in descendants(proc.pid)}
    if interrupted and proc.poll() is None:
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001 - fall through to the normal stop
            pass
    stack.stop()
    leftovers = []
    for pid, name in children.items():
        if proc_name(pid) != name:
            continue  # gone (or the pid was reused)
        leftovers.append(f"{name} ({pid})")
        with _suppress_lookup():
            os.kill(pid, _signal.SIGTERM)
    deadline = _time.monotonic() + 5
    for pid, name in children.items():
        while proc_name(pid) == name and _time.monotonic() < deadline:
            _time.sleep(0.05)
        if proc_name(pid) == name:
            with _suppress_lookup():
                os.kill(pid, _signal.SIGKILL)
    return leftovers


def _suppress_lookup() -> Any:
    import contextlib

    return contextlib.suppress(ProcessLookupError)
