"""The application's recent log lines, from every process, in a bounded buffer.

- ``mask`` hides secrets (API keys and tokens in query strings or ``key=value`` text,
  passwords in URLs) before a line is stored, shipped or shown.
- ``LogBuffer`` keeps lines bounded in count AND in bytes, oldest out first, thread-safe.
- ``BufferHandler`` is the logging handler: ``attach()`` puts one on the ``marketdesk``-wide
  root logger at start-up (a second call, or one after this module was reloaded, finds the
  one there and adds none); ``detach()`` takes it off (tests). Its ``emit`` only appends to
  in-memory deques: it never blocks and never does I/O.
- Workers ship their lines through the event stream (``ship``, run by a per-process periodic
  of the ops domain); each web process takes them in (web/ops.py), so /logs shows them all.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

# an attribute, not a class: after importlib.reload the class is a new one, the marker is not
MARKER = "_marketdesk_ops_buffer"
LINE_EVENT = "oplog"
LOGS_TOPIC = "logs"
LEVELS = ("debug", "info", "warning", "error", "critical")

_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host -> scheme://user:***@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)(@)"), r"\1***\3"),
    # ?apikey=...&token=... in URLs
    (re.compile(r"([?&;](?:api[_-]?key|apikey|key|token|access[_-]?token|auth|password|passwd"
                r"|secret|signature|sig)=)[^&\s#\"']+", re.IGNORECASE), r"\1***"),
    # api_key=..., "password": "...", token: ... in text
    (re.compile(r"(\b(?:api[_-]?key|apikey|password|passwd|secret|token|access[_-]?token)"
                r"[\"']?\s*[=:]\s*[\"']?)[^\s,;&\"'}]+", re.IGNORECASE), r"\1***"),
    # Authorization: Bearer xxx
    (re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1***"),
)
_JOB_RE = re.compile(r"\bjob[ :=]+([0-9a-f]{32})\b")


def mask(text: str) -> str:
    """``text`` with every secret we recognise replaced by ``***``."""
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def process_name(role: str) -> str:
    return f"{role}:{socket.gethostname()}:{os.getpid()}"


def _cost(line: dict[str, Any]) -> int:
    """Bytes a line holds in memory (its dict and its strings), roughly but never less."""
    return sys.getsizeof(line) + sum(sys.getsizeof(v) for v in line.values())


class LogBuffer:
    """At most ``max_lines`` lines and ``max_bytes`` bytes; the oldest go first."""

    def __init__(self, max_lines: int, max_bytes: int) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._lines: deque[tuple[dict[str, Any], int]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self.dropped = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, line: dict[str, Any]) -> dict[str, Any]:
        """Store a line (masked again: lines from other processes are taken as they come);
        the stored line, numbered."""
        line = {**line, "message": mask(str(line.get("message", "")))[:8000]}
        cost = _cost(line) + 64  # the deque slot and tuple
        with self._lock:
            line["seq"] = next(self._seq)
            self._lines.append((line, cost))
            self._bytes += cost
            while self._lines and (len(self._lines) > self.max_lines or self._bytes > self.max_bytes):
                _, gone = self._lines.popleft()
                self._bytes -= gone
                self.dropped += 1
        return line

    def query(self, *, level: str | None = None, job: str | None = None,
              logger: str | None = None, since: datetime | None = None,
              after_seq: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` lines matching, oldest first. ``level`` is the least severe
        shown; ``logger`` matches a logger and its children; ``job`` a job id (or its start)."""
        floor = LEVELS.index(level) if level else 0
        since_iso = since.isoformat() if since else None
        with self._lock:
            snapshot = [line for line, _ in self._lines]
        out: list[dict[str, Any]] = []
        for line in reversed(snapshot):
            if after_seq is not None and line["seq"] <= after_seq:
                break
            if since_iso and line["at"] < since_iso:
                break
            if not matches(line, floor, job, logger):
                continue
            out.append(line)
            if len(out) >= limit:
                break
        out.reverse()
        return out


def matches(line: dict[str, Any], floor: int, job: str | None, logger: str | None) -> bool:
    lvl = line.get("level", "info")
    if (LEVELS.index(lvl) if lvl in LEVELS else 1) < floor:
        return False
    if job and not (line.get("job") or "").startswith(job):
        return False
    name = line.get("logger") or ""
    return not (logger and name != logger and not name.startswith(logger + "."))


def line_of(record: logging.LogRecord, source: str) -> dict[str, Any]:
    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
    job = getattr(record, "job_id", None)
    if job is None:
        found = _JOB_RE.search(message)
        job = found.group(1) if found else None
    return {"at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower() if record.levelname.lower() in LEVELS else "info",
            "logger": record.name, "message": mask(message), "job": job, "source": source}


class BufferHandler(logging.Handler):
    """Appends each record, masked, to the buffer (web) and/or the outbox shipped to the
    event stream (workers). Never blocks: deque appends under a lock."""

    def __init__(self, source: str, buffer: LogBuffer | None, ship: bool,
                 outbox_size: int = 2000) -> None:
        super().__init__(logging.INFO)
        setattr(self, MARKER, True)
        self.source = source
        self.buffer = buffer
        self.outbox: deque[dict[str, Any]] | None = deque(maxlen=outbox_size) if ship else None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = line_of(record, self.source)
            if self.buffer is not None:
                line = self.buffer.add(line)
            if self.outbox is not None:
                self.outbox.append(line)
        except Exception:  # a log line must never break the code that logs it
            self.handleError(record)

    def take(self, limit: int = 500) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while self.outbox and len(out) < limit:
            out.append(self.outbox.popleft())
        return out


class MaskFilter(logging.Filter):
    """Masks secrets in a record before any handler (the console too) formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def installed(root: logging.Logger | None = None) -> BufferHandler | None:
    root = root or logging.getLogger()
    return next((h for h in root.handlers if getattr(h, MARKER, False)), None)  # type: ignore[return-value]


_ATTACH_LOCK = threading.Lock()


def attach(source: str, buffer: LogBuffer | None, ship: bool) -> BufferHandler:
    """The process's handler, attached to the root logger once (whatever reloads happened)."""
    with _ATTACH_LOCK:
        root = logging.getLogger()
        found = installed(root)
        if found is not None:
            return found
        handler = BufferHandler(source, buffer, ship)
        root.addHandler(handler)
        # the console and files show lines masked too (httpx logs each URL, API key included)
        for other in root.handlers:
            if not any(getattr(f, MARKER, False) for f in other.filters):
                masking = MaskFilter()
                setattr(masking, MARKER, True)
                other.addFilter(masking)
        # our own INFO lines must reach it even where nobody configured logging (uvicorn only
        # configures its own loggers); other libraries keep the root's level
        ours = logging.getLogger("marketdesk")
        if ours.getEffectiveLevel() > logging.INFO:
            ours.setLevel(logging.INFO)
        return handler


def detach() -> None:
    with _ATTACH_LOCK:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, MARKER, False)]:
            root.removeHandler(handler)
        for other in root.handlers:
            for f in [f for f in other.filters if getattr(f, MARKER, False)]:
                other.removeFilter(f)


async def ship(engine: Any, handler: BufferHandler | None = None) -> None:
    """Send the lines ``handler`` (by default the process's) took since the last call through
    the event stream (a worker's periodic; the web's monitor passes its own, so that it never
    attaches a second one under a worker's name). A failure drops them quietly: logging it
    would feed the loop."""
    if handler is None:
        # the worker's first pass, at its start: attach it now
        handler = installed() or attach(process_name("worker"), None, ship=True)
    lines = handler.take()
    if not lines:
        return
    try:
        await engine.publish((LINE_EVENT, (LOGS_TOPIC,), {"lines": lines}))
    except Exception:  # noqa: S110 - see the docstring
        pass
