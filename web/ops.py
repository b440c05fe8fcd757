"""Operations: /operations (health now and over time, workers, caches), /logs (the whole
application's log, live), /api/health, /api/health/history, /api/logs, /metrics, and the
header badge every page carries.

Each web process runs a ``Monitor`` (started by the slice's lifespan hook): it measures its own
event-loop lag, checks the database and Redis every ``MARKETDESK_HEALTH_CHECK_SECONDS``, and
pushes the badge to its own pages when the status changes. That push goes straight to the
process's SSE clients, not through the event stream: the badge must turn red when Redis (which
carries the stream) is the thing that is down. It also keeps the log buffer: this process's
lines from its logging handler and the workers' lines from the event stream.

/metrics is served by each web process from the database (per-kind job figures: the job counts
and the health samples, written by every worker) plus its own HTTP figures. prometheus_client's
multiprocess mode (files in a shared directory, cleaned up per dead pid) is not needed: no
worker holds a figure that is not already in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from litestar import Litestar, Response, Router, get
from litestar.enums import MediaType
from litestar.exceptions import NotFoundException, ValidationException
from litestar.plugins.htmx import HTMXRequest
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.types import Message as ASGIMessage
from markupsafe import Markup
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.exceptions import RedisError
from sse_starlette import ServerSentEvent

from jobs.caches import FunctionCache, cache_stats
from jobs.db import as_utc, reads, utcnow
from jobs.engine import Engine, cancel_until_done, run_forever
from jobs.events import Event
from jobs.models import JobCount
from jobs.ops import health
from jobs.ops.logbuffer import (
    LEVELS,
    LINE_EVENT,
    LOGS_TOPIC,
    LogBuffer,
    attach,
    detach,
    process_name,
    ship,
)
from jobs.ops.settings import ops_settings
from jobs.status import ACTIVE_STATUSES, TERMINAL_STATUSES
from web.common import errors, is_embed, json_response, page
from web.render import ENV, render
from web.slice import Message, NavEntry, Region, WebSlice

log = logging.getLogger("marketdesk.ops")

BADGE_TOPIC = "ops"
PAGE_TOPIC = "opspage"
KIND_TOPIC = "opskind"  # opskind:<job kind>: that kind's metrics panel, on the kind's own pages
KIND_WINDOW = "24h"
# A message pushed by this process alone has no stream id: its wire form carries none (the
# browser's Last-Event-ID stays the stream's), and this id only gets it past the "already sent"
# check of web.events.client_stream.
LOCAL_ID = f"{2**62}-0"
STATUS_LABEL = {"green": "healthy", "amber": "degraded", "red": "down"}


def push_local(hub: Any, topic: str, messages: list[Message]) -> int:
    """Send ``messages`` to this process's pages subscribed to ``topic``; how many got them."""
    if not messages:
        return 0
    wire = b"".join(ServerSentEvent(data=html, event=name).encode() for name, html in messages)
    sent = 0
    for client in list(hub.by_topic.get(topic, ())):
        if not client.as_json:
            client.offer((LOCAL_ID, wire))
            sent += 1
    return sent


# -- the monitor ------------------------------------------------------------------------------
def _cpu_waits() -> Callable[[], float | None]:
    """A reader of how long the calling thread has waited, runnable, for a CPU (ms, Linux's
    schedstat; None elsewhere): the part of a loop's lag that other work on a busy machine
    caused, not this loop's own callbacks or a blocking call in one."""
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        return lambda: None

    def waited() -> float | None:
        try:
            return int(os.pread(fd, 100, 0).split()[1]) / 1e6
        except (OSError, ValueError, IndexError):
            return None
    weakref.finalize(waited, os.close, fd)
    return waited


class Monitor:
    LAG_EVERY = 0.1  # seconds between two lag probes
    LAG_WINDOW = 600  # probes kept (a minute)

    def __init__(self, app: Litestar) -> None:
        self.app = app
        self.settings = ops_settings()
        self.name = process_name("web")
        self.lags: deque[float] = deque(maxlen=self.LAG_WINDOW)
        self.own_lags: deque[float] = deque(maxlen=self.LAG_WINDOW)  # less the wait for a CPU
        self.cpu_waited: Callable[[], float | None] | None = None  # opened in the loop's thread
        self.buffer = LogBuffer(self.settings.log_buffer_lines, self.settings.log_buffer_bytes)
        self.live: dict[str, Any] = {"status": "amber", "reasons": ["starting"],
                                     "checked_at": utcnow().isoformat(), "components": {},
                                     "workers": []}
        self.tasks: list[asyncio.Task[None]] = []
        self.pushed_seq = 0
        self.owns_handler = False

    @property
    def engine(self) -> Engine:
        return self.app.state.engine  # type: ignore[no-any-return]

    def lag_stats(self) -> dict[str, Any]:
        """The minute's lag, max and p99; ``own_``: the same less the time the loop's thread
        waited for a CPU (what the loop's own work and blocking calls caused), where known."""
        stats: dict[str, Any] = {"probes": len(self.lags)}
        for prefix, window in (("", self.lags), ("own_", self.own_lags)):
            values = sorted(window)
            stats[f"{prefix}max_ms"] = round(values[-1], 3) if values else None
            stats[f"{prefix}p99_ms"] = (round(values[min(len(values) - 1, int(len(values) * 0.99))], 3)
                                        if values else None)
        return stats

    async def start(self) -> None:
        # shipped like a worker's: with several web processes (serve --web N), each one's /logs
        # shows the others' lines too (its own come back from the stream and are skipped)
        handler = attach(self.name, self.buffer, ship=True)
        self.owns_handler = handler.buffer is self.buffer
        if handler.buffer is not None and not self.owns_handler:
            self.buffer = handler.buffer  # a second app in this process shares the first's
        loops = ((self._probe_lag, 0), (self.check, self.settings.health_check_seconds),
                 (self._push_lines, 0.25),
                 (lambda: ship(self.engine, handler), self.settings.log_ship_seconds))
        self.tasks = [asyncio.create_task(run_forever(step, every, log, "operations monitor: "))
                      for step, every in loops]
        # the workers' lines and jobs' log lines: from the hub, which reads the stream anyway
        self.app.state.hub.taps.append(self.take)
        await self.check()

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.app.state.hub.taps.remove(self.take)
        await cancel_until_done(self.tasks)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await self.engine.redis.delete(health.LAG_KEY_PREFIX + self.name)
        if self.owns_handler:
            # the capture stays while any other app of this process runs (they share it): the
            # last one to end takes it away, whichever began first
            sharing = [m for m in _MONITORS if m.buffer is self.buffer and m is not self]
            if sharing:
                sharing[0].owns_handler = True
            else:
                detach()

    async def _probe_lag(self) -> None:
        """One probe: sleep a tenth of a second; how late the wake-up came is the loop's lag.
        The next probe begins in the same pass of the loop (``run_forever`` with no pause), so
        a stall anywhere falls in one."""
        loop = asyncio.get_running_loop()
        if self.cpu_waited is None:
            self.cpu_waited = _cpu_waits()
        began, waited = loop.time(), self.cpu_waited()
        await asyncio.sleep(self.LAG_EVERY)
        lag = max(0.0, (loop.time() - began - self.LAG_EVERY) * 1000)
        self.lags.append(lag)
        if waited is not None and (now := self.cpu_waited()) is not None and now >= waited:
            self.own_lags.append(max(0.0, lag - (now - waited)))

    async def check(self) -> dict[str, Any]:
        """Check the database and Redis now; push the badge if the status changed."""
        engine = self.engine
        db_ok, db_ms, db_error = await health._timed(engine.db.ping(), 2.0)
        redis_ok, redis_ms, redis_error = await health._timed(engine.redis.ping(), 1.0)
        workers: list[str] = []
        lag = self.lag_stats()
        if redis_ok:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    workers = await health.workers_alive(engine.redis)
            # this process's lag for the health sampler, with an expiry
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(1):
                    await engine.redis.set(
                        health.LAG_KEY_PREFIX + self.name, json.dumps({**lag, "at": utcnow().isoformat()}),
                        px=int(max(10.0, 3 * self.settings.health_check_seconds) * 1000))
        reasons = []
        if not db_ok:
            reasons.append(f"database down ({db_error})")
        if not redis_ok:
            reasons.append(f"Redis down ({redis_error})")
        if redis_ok and not workers:
            reasons.append("no worker alive")
        # sustained lag, not one stall (start-up, a collector pass): the minute's p99
        if lag["p99_ms"] is not None and lag["p99_ms"] > self.settings.health_lag_amber_ms:
            reasons.append(f"event loop lag p99 {lag['p99_ms']:.0f} ms "
                           f"(over {self.settings.health_lag_amber_ms:.0f} ms)")
        status = "red" if not (db_ok and redis_ok) else ("amber" if reasons else "green")
        before = self.live.get("status")
        self.live = {
            "status": status, "label": STATUS_LABEL[status], "reasons": reasons,
            "checked_at": utcnow().isoformat(),
            "components": {"database": {"ok": db_ok, "latency_ms": db_ms, "error": db_error},
                           "redis": {"ok": redis_ok, "latency_ms": redis_ms, "error": redis_error}},
            "workers": workers, "event_loop_lag": {self.name: lag},
        }
        if status != before:
            if before is not None and "starting" not in self.live.get("reasons", []):
                log.info("health is now %s%s", STATUS_LABEL[status],
                         f": {'; '.join(reasons)}" if reasons else "")
            hub = getattr(self.app.state, "hub", None)
            if hub is not None:
                push_local(hub, BADGE_TOPIC, [("ops-badge", render_badge(self.live))])
        return self.live

    async def _push_lines(self) -> None:
        """New lines of the buffer to this process's /logs pages."""
        lines = self.buffer.query(after_seq=self.pushed_seq, limit=500)
        if not lines:
            return
        self.pushed_seq = lines[-1]["seq"]
        hub = getattr(self.app.state, "hub", None)
        if hub is not None and hub.by_topic.get(LOGS_TOPIC):
            html = "".join(render("ops/log_line.html", line=line) for line in lines)
            push_local(hub, LOGS_TOPIC, [("log-lines", html)])

    def take(self, event: Event) -> None:
        if event.type == LINE_EVENT:
            for line in event.data.get("lines", []):
                if isinstance(line, dict) and line.get("source") != self.name:
                    self.buffer.add(line)
        elif event.type == "log":  # a job's own log line (JobContext.log)
            line = event.data.get("line") or {}
            self.buffer.add({"at": line.get("at") or utcnow().isoformat(),
                             "level": line.get("level", "info"), "logger": "marketdesk.job",
                             "message": line.get("message", ""), "job": event.data.get("job_id"),
                             "source": "job"})


# The running apps' monitors, the newest last. One app runs in a web process; tests may start a
# second one, whose end must leave the first's monitor (and its log capture) as they were.
_MONITORS: list[Monitor] = []
_STARTING = {"status": "amber", "reasons": ["starting"]}


def monitor() -> Monitor:
    if not _MONITORS:
        raise RuntimeError("the operations monitor is not running (the app's lifespan starts it)")
    return _MONITORS[-1]


def _live() -> dict[str, Any]:
    return _MONITORS[-1].live if _MONITORS else _STARTING


@contextlib.asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    mon = Monitor(app)
    _MONITORS.append(mon)
    try:
        await mon.start()
        yield
    finally:
        _MONITORS.remove(mon)  # first: a stop cut short must not leave a dead monitor in use
        await mon.stop()


# -- HTTP metrics -----------------------------------------------------------------------------
disable_created_metrics()  # *_created series double the output and no dashboard reads them
HTTP_REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter("marketdesk_http_requests", "HTTP requests answered, per route and status",
                        ["method", "route", "status"], registry=HTTP_REGISTRY)
HTTP_LATENCY = Histogram("marketdesk_http_request_duration_seconds",
                         "Time to answer an HTTP request, per route (server-sent event streams "
                         "are counted, not timed)", ["method", "route"], registry=HTTP_REGISTRY,
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                  2.5, 5, 10))
STREAMS = frozenset({"/events"})


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    if not ops_settings().http_metrics:
        return app

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_status(message: ASGIMessage) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_status)
        finally:
            key = (scope.get("method", "GET"), scope.get("path_template") or "unmatched", status)
            children = _CHILDREN.get(key) or _children(key)
            children[0].inc()
            if children[1] is not None:
                children[1].observe(time.perf_counter() - began)
    return middleware


# labelled children by (method, route template, status): ``labels()`` costs a lock and a few
# allocations per call, a dict lookup does not (the keys are few: routes × methods × statuses)
_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _children(key: tuple[str, str, int]) -> tuple[Any, Any]:
    method, route, status = key
    latency = None if route in STREAMS else HTTP_LATENCY.labels(method, route)
    found = _CHILDREN[key] = (HTTP_REQUESTS.labels(method, route, str(status)), latency)
    return found


COUNT = JobCount.__table__  # type: ignore[attr-defined]
_TERMINAL = {str(s) for s in TERMINAL_STATUSES}


@reads
def job_counts(conn: sa.Connection) -> list[tuple[str, str, int]]:
    return [(k, s, int(n)) for k, s, n in conn.execute(sa.select(COUNT.c.kind, COUNT.c.status, COUNT.c.n))]


class _Snapshot:
    """One scrape's figures as Prometheus metric families (read before, rendered here)."""

    def __init__(self, counts: list[tuple[str, str, int]], hour: dict[str, Any],
                 live: dict[str, Any], lags: dict[str, Any]) -> None:
        self.counts, self.hour, self.live, self.lags = counts, hour, live, lags

    def collect(self) -> Any:
        yield from HTTP_REGISTRY.collect()
        finished = CounterMetricFamily("marketdesk_jobs_finished", "Jobs that finished, per kind "
                                       "and final status", labels=["kind", "status"])
        unfinished = GaugeMetricFamily("marketdesk_jobs_unfinished", "Jobs waiting or running, "
                                       "per kind and status", labels=["kind", "status"])
        for kind, status, n in self.counts:
            (finished if status in _TERMINAL else unfinished).add_metric([kind, status], n)
        yield finished
        yield unfinished
        dur = GaugeMetricFamily("marketdesk_job_duration_seconds", "Job run time over the last "
                                "hour, per kind", labels=["kind", "quantile"])
        queued = GaugeMetricFamily("marketdesk_job_queued_seconds", "Time from submit to start "
                                   "over the last hour, per kind", labels=["kind", "quantile"])
        rate = GaugeMetricFamily("marketdesk_job_failure_ratio", "Failed / finished over the "
                                 "last hour, per kind", labels=["kind"])
        through = GaugeMetricFamily("marketdesk_jobs_per_minute", "Jobs finished per minute over "
                                    "the last hour, per kind", labels=["kind"])
        for kind, f in self.hour.get("kinds", {}).items():
            for q in ("p50", "p95", "p99"):
                if f[q] is not None:
                    dur.add_metric([kind, f"0.{q[1:]}"], f[q])
            for q in ("queued_p50", "queued_p95"):
                if f[q] is not None:
                    queued.add_metric([kind, f"0.{q[-2:]}"], f[q])
            if f["failure_rate"] is not None:
                rate.add_metric([kind], f["failure_rate"])
            through.add_metric([kind], f["per_minute"] or 0.0)
        yield from (dur, queued, rate, through)
        up = GaugeMetricFamily("marketdesk_component_up", "1 when the component answers",
                               labels=["component"])
        latency = GaugeMetricFamily("marketdesk_component_latency_seconds", "Round trip of a "
                                    "ping", labels=["component"])
        for name, c in self.live.get("components", {}).items():
            up.add_metric([name], 1.0 if c["ok"] else 0.0)
            if c["latency_ms"] is not None:
                latency.add_metric([name], c["latency_ms"] / 1000)
        yield up
        yield latency
        yield GaugeMetricFamily("marketdesk_workers_alive", "Workers heartbeating",
                                value=len(self.live.get("workers", [])))
        lag = GaugeMetricFamily("marketdesk_event_loop_lag_seconds", "Event-loop lag of each web "
                                "process over the last minute (own_: less the time its thread "
                                "waited for a CPU)", labels=["process", "stat"])
        for name, figures in self.lags.items():
            for stat in ("max", "p99", "own_max", "own_p99"):
                if figures.get(f"{stat}_ms") is not None:
                    lag.add_metric([name, stat], figures[f"{stat}_ms"] / 1000)
        yield lag


@get("/metrics", media_type="text/plain; version=0.0.4; charset=utf-8", include_in_schema=False)
async def metrics(engine: Engine) -> Response[bytes]:
    """Prometheus text format: per-kind job figures, health, and this process's HTTP figures."""
    mon = monitor()
    counts = await job_counts(engine.db)
    hour = await health.cached_history(engine.db, "1h")
    lags: dict[str, Any] = dict(mon.live.get("event_loop_lag", {}))
    with contextlib.suppress(RedisError, OSError, TimeoutError):
        async with asyncio.timeout(1.0):
            lags.update(await health.web_lags(engine.redis))
    body = generate_latest(_Snapshot(counts, hour, mon.live, lags))  # type: ignore[arg-type]
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


# -- health API -------------------------------------------------------------------------------
def _window(window: str) -> str:
    if window not in health.WINDOWS:
        raise ValidationException(f"window: {window!r} is not allowed; allowed: "
                                  f"{', '.join(health.WINDOWS)}")
    return window


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def sample_payload(sample: dict[str, Any] | None) -> dict[str, Any] | None:
    if sample is None:
        return None
    return {k: _iso(v) for k, v in sample.items()}


async def health_payload(engine: Engine) -> dict[str, Any]:
    mon = monitor()
    live = mon.live
    latest = None
    with contextlib.suppress(Exception):  # the database may be what is down
        async with asyncio.timeout(2.0):
            latest = await health.latest_sample(engine.db)
    data = (latest or {}).get("data") or {}
    lags = dict(data.get("lags") or {})
    lags.update(live.get("event_loop_lag", {}))
    return {
        "status": live["status"], "label": live.get("label"), "reasons": live["reasons"],
        "checked_at": live["checked_at"], "components": live["components"],
        "workers": {"alive": len(live["workers"]), "ids": live["workers"]},
        "queue": data.get("queue", {}), "event_loop_lag": lags,
        "latest_sample": sample_payload(latest),
    }


@get("/api/health")
async def api_health(engine: Engine) -> dict[str, Any]:
    """The latest health sample and a live check (at most a check period old; never waits)."""
    return await health_payload(engine)


# the body is encoded ahead (and kept per sample): the document says what it holds
@get("/api/health/history", responses={200: json_response(
    "Points over the window, its figures per kind, trends against the window before")})
async def api_health_history(engine: Engine, window: str = "1h") -> Response[bytes]:
    """Charts' points over ``window`` (1h, 24h, 30d), the window's figures per kind, and
    trends against the window before."""
    body = await health.cached_history(engine.db, _window(window), as_json=True)
    return Response(body, media_type="application/json")


# -- pages ------------------------------------------------------------------------------------
CHART_W, CHART_H = 560, 110


def chart(points: list[dict[str, Any]], key: str, start: str, end: str, unit: str,
          title: str) -> dict[str, Any]:
    """An SVG line chart's geometry: the line and one hoverable dot per point."""
    t0, t1 = datetime.fromisoformat(start), datetime.fromisoformat(end)
    span = max(1.0, (t1 - t0).total_seconds())
    values = [p[key] for p in points if p.get(key) is not None]
    top = max(values, default=0) or 1
    dots = []
    for p in points:
        v = p.get(key)
        if v is None:
            continue
        x = round((datetime.fromisoformat(p["at"]) - t0).total_seconds() / span * CHART_W, 1)
        y = round(CHART_H - (v / top) * (CHART_H - 8) - 4, 1)
        dots.append({"x": min(CHART_W, max(0.0, x)), "y": y, "value": v, "at": p["at"],
                     "down": p.get("down", False)})
    return {"key": key, "title": title, "unit": unit, "top": top, "w": CHART_W, "h": CHART_H,
            "line": " ".join(f"{d['x']},{d['y']}" for d in dots), "dots": dots,
            "last": values[-1] if values else None}


CHARTS = (("db_ms", "ms", "Database latency"), ("redis_ms", "ms", "Redis latency"),
          ("lag_ms", "ms", "Event-loop lag (worst web process)"), ("workers", "", "Workers alive"),
          ("queue_pending", "", "Jobs pending"), ("queue_active", "", "Jobs running"),
          ("per_minute", "/min", "Jobs finished per minute"), ("failed", "", "Jobs failed"))


@reads
def _running_by_worker(conn: sa.Connection) -> dict[str, list[dict[str, Any]]]:
    from jobs.models import JobTable

    job = JobTable.__table__  # type: ignore[attr-defined]
    out: dict[str, list[dict[str, Any]]] = {}
    stmt = sa.select(job.c.id, job.c.kind, job.c.status, job.c.worker_id, job.c.started_at).where(
        job.c.status.in_([s.value for s in ACTIVE_STATUSES])).order_by(job.c.started_at).limit(200)
    for job_id, kind, status, worker, started in conn.execute(stmt):
        out.setdefault(worker or "", []).append({"id": job_id, "kind": kind, "status": status,
                                                 "started_at": _iso(started)})
    return out


async def operations_context(engine: Engine, window: str) -> dict[str, Any]:
    hist = await health.cached_history(engine.db, window)
    now = await health_payload(engine)
    running = await _running_by_worker(engine.db)
    workers = [{"id": w, "jobs": running.get(w, [])} for w in now["workers"]["ids"]]
    return {"window": window, "windows": list(health.WINDOWS), "hist": hist, "now": now,
            "charts": [chart(hist["points"], k, hist["from"], hist["to"], u, t)
                       for k, u, t in CHARTS],
            "workers": workers, "orphans": {w: j for w, j in running.items()
                                            if w not in now["workers"]["ids"]},
            "caches": cache_stats(), "log_buffer": buffer_stats()}


def buffer_stats() -> dict[str, Any]:
    buf = monitor().buffer
    return {"lines": len(buf), "bytes": buf.bytes, "max_lines": buf.max_lines,
            "max_bytes": buf.max_bytes, "dropped": buf.dropped}


@get("/operations", media_type=MediaType.HTML)
async def operations_page(request: HTMXRequest, engine: Engine, window: str = "1h") -> Response[str]:
    return page(request, "ops/page.html", **await operations_context(engine, _window(window)))


async def _panel(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    window = topic.partition(":")[2] or "1h"
    if window not in health.WINDOWS:
        return []
    return [("ops-panel", render("ops/panel.html", **await operations_context(engine, window)))]


# -- a job kind's metrics, on its own pages -------------------------------------------------------
KIND_CHARTS = (("per_minute", "/min", "Finished per minute"), ("failed", "", "Failed"),
               ("p95", "s", "Duration p95"), ("queued_p50", "s", "Time queued p50"))


def kind_slug(kind: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", kind.lower())


async def kind_panel(engine: Engine, kind: str, embed: bool = False) -> str:
    hist = await health.cached_kind_history(engine.db, kind, KIND_WINDOW)
    return render("ops/kind_panel.html", kind=kind, slug=kind_slug(kind), hist=hist, embed=embed,
                  charts=[chart(hist["points"], k, hist["from"], hist["to"], u, t)
                          for k, u, t in KIND_CHARTS])


def _known_kind(kind: str) -> str:
    from jobs.registry import kind_names

    names = kind_names()
    if kind not in names:
        shown = kind if len(kind) <= 64 else kind[:64] + "…"
        raise NotFoundException(f"No job kind {shown!r}; known: {', '.join(names)}")
    return kind


@get("/operations/kinds/{kind:str}", name="ops-kind", media_type=MediaType.HTML,
     responses=errors(404, meaning={404: "No job kind of that name; the answer lists the known ones"}))
async def kind_fragment(request: HTMXRequest, engine: Engine, kind: str) -> Response[str]:
    """One job kind's metrics over the last 24 hours (the panel its pages show)."""
    return Response(await kind_panel(engine, _known_kind(kind), embed=is_embed(request)),
                    media_type=MediaType.HTML)


async def _kind(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    from jobs.registry import kind_names

    kind = topic.partition(":")[2]
    if kind not in kind_names():
        return []
    return [(f"opskind-{kind_slug(kind)}", await kind_panel(engine, kind))]


def kind_metrics(kind: str) -> Markup:
    """Where a page shows ``kind``'s metrics: filled when its live connection opens (the page
    adds ``kind_topics(kind)`` to its topics) and after each health sample."""
    return Markup(render("ops/kind_slot.html", kind=kind, slug=kind_slug(kind)))


def kind_topics(*kinds: str) -> str:
    return "".join(f"&topic={KIND_TOPIC}:{k}" for k in kinds)


def render_badge(live: dict[str, Any]) -> str:
    return _badge_html(live["status"], tuple(live.get("reasons") or ()))


@functools.lru_cache(maxsize=64)
def _badge_html(status: str, reasons: tuple[str, ...]) -> str:
    """The badge is on every page: rendered once per (status, reasons), not per request."""
    return render("ops/badge.html", health={"status": status, "reasons": list(reasons)})


async def _badge(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    return [("ops-badge", render_badge(_live()))]


async def _no_state(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    return []  # /logs pages get new lines from the monitor (push_local), nothing on connect


# -- logs -------------------------------------------------------------------------------------
JOB_FILTER_RE = re.compile(r"^[0-9a-f]{1,32}$")
LOGGER_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


def log_filters(level: str | None, job: str | None, logger: str | None, since: str | None,
                limit: int) -> dict[str, Any]:
    """The filters, checked: a bad one is a 400 naming it and what is allowed."""
    level, job, logger, since = (v.strip() if v else None for v in (level, job, logger, since))
    if level and level not in LEVELS:
        raise ValidationException(f"level: {level!r} is not allowed; allowed: {', '.join(LEVELS)}")
    if job and not JOB_FILTER_RE.match(job):
        raise ValidationException(f"job: {job!r} is not a job id (up to 32 hex digits)")
    if logger and not LOGGER_RE.match(logger):
        raise ValidationException(f"logger: {logger!r} is not a logger name (letters, digits, . _ -)")
    when = None
    if since:
        try:
            when = as_utc(datetime.fromisoformat(since.replace("Z", "+00:00")))
        except ValueError:
            raise ValidationException(f"since: {since!r} is not an ISO 8601 time "
                                      "(e.g. 2026-11-30T14:00:00Z)") from None
    if not 1 <= limit <= 1000:
        raise ValidationException(f"limit: {limit} is out of range; allowed: 1 to 1000")
    return {"level": level, "job": job, "logger": logger, "since": when, "limit": limit}


@get("/api/logs")
async def api_logs(level: str | None = None, job: str | None = None, logger: str | None = None,
                   since: str | None = None, limit: int = 200) -> dict[str, Any]:
    """Recent log lines of every process (secrets masked), oldest first."""
    filters = log_filters(level, job, logger, since, limit)
    lines = monitor().buffer.query(**filters)
    return {"lines": lines, "count": len(lines), "buffer": buffer_stats()}


@get("/logs", media_type=MediaType.HTML)
async def logs_page(request: HTMXRequest, level: str | None = None, job: str | None = None,
                    logger: str | None = None, since: str | None = None,
                    limit: int = 300) -> Response[str]:
    filters = log_filters(level, job, logger, since, limit)
    lines = monitor().buffer.query(**filters)
    return page(request, "ops/logs.html", lines=lines, levels=LEVELS,
                filters={k: (v.isoformat() if isinstance(v, datetime) else v or "")
                         for k, v in filters.items()}, buffer=buffer_stats())


# -- helpers for the templates ----------------------------------------------------------------
def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:.3f}".rstrip("0").rstrip(".") if value < 10 else f"{value:.1f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def _register_function_caches() -> None:
    """The lru_caches of pure functions in the domains below (bounded in size; a result of
    theirs never goes stale), shown with the others on /operations."""
    from jobs import calendars
    from jobs.prices import calendar
    from jobs.simulation import catalog

    for name, fn in (("ops.badge", _badge_html),
                     ("calendars.holidays_of", calendars.holidays_of),
                     ("prices.calendar.year", calendar._year),
                     ("simulation.catalog.default_models", catalog._default_models),
                     ("simulation.catalog.models_file", catalog._read_models_file_version)):
        FunctionCache(name, fn)


_register_function_caches()
ENV.filters["fig"] = _fmt
ENV.globals["kind_metrics"] = kind_metrics
ENV.globals["kind_topics"] = kind_topics
ENV.globals["ops_badge"] = lambda: Markup(render_badge(_live()))

router = Router(path="/", route_handlers=[
    operations_page, logs_page, api_health, api_health_history, api_logs, metrics, kind_fragment,
])

WEB = WebSlice(
    router=router,
    regions=(Region(BADGE_TOPIC, _badge), Region(LOGS_TOPIC, _no_state, on_connect=False),
             Region(PAGE_TOPIC, _panel, follows=("health",), coalesce=True, keyed=True,
                    on_connect=False),
             Region(KIND_TOPIC, _kind, follows=("health",), coalesce=True, keyed=True)),
    nav=(NavEntry("Operations", "/operations"), NavEntry("Logs", "/logs")),
    middleware=(metrics_middleware,),
    lifespan=(lifespan,),
)

__all__ = ["WEB", "Monitor", "push_local"]
