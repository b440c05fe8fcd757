"""Health samples: taken once per period by one worker, kept with retention, downsampled to
hourly rows once old, and read back as the history the operations page charts.

A sample holds what an operator asks first: are the database and Redis up and how fast,
how many workers are alive, how deep the queue is per status, how far behind each web
process's event loop runs, and the jobs that finished since the previous sample, per kind,
with histograms of their durations and times queued (histograms merge exactly, so hourly rows
and chart buckets keep meaningful percentiles).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from redis.exceptions import RedisError

from jobs.caches import BoundedCache
from jobs.db import operation, reads, utcnow
from jobs.keys import WORKER_KEY_PREFIX
from jobs.models import JobCount, JobTable
from jobs.ops.models import BOUNDS, DURATION_COLUMNS, HEALTH_KIND, QUEUED_COLUMNS, HealthSample
from jobs.ops.settings import ops_settings
from jobs.registry import kind_names
from jobs.status import ACTIVE_STATUSES, Status

SAMPLE = HealthSample.__table__  # type: ignore[attr-defined]
JOB = JobTable.__table__  # type: ignore[attr-defined]
COUNT = JobCount.__table__  # type: ignore[attr-defined]

# each web process's event-loop lag, written at each health check by its monitor (web/ops.py)
LAG_KEY_PREFIX = "marketdesk:ops:lag:"
WINDOWS: dict[str, tuple[timedelta, int]] = {  # window -> (span, chart bucket in seconds)
    "1h": (timedelta(hours=1), 60),
    "24h": (timedelta(hours=24), 900),
    "30d": (timedelta(days=30), 3600 * 6),
}
_ACTIVE = [s.value for s in ACTIVE_STATUSES]
_FAILED = Status.FAILED.value


# -- histograms -------------------------------------------------------------------------------
def bucket_of(seconds: float) -> int:
    for i, bound in enumerate(BOUNDS):
        if seconds <= bound:
            return i
    return len(BOUNDS) - 1


def percentile(hist: list[int], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram over BOUNDS, interpolated inside its bucket."""
    total = sum(hist)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        if n and seen + n >= rank:
            low = BOUNDS[i - 1] if i else 0.0
            high = BOUNDS[i] if math.isfinite(BOUNDS[i]) else low * 2
            return round(low + (high - low) * (rank - seen) / n, 3)
        seen += n
    return None


def _add(into: list[int], other: list[int]) -> list[int]:
    if not into:
        return list(other)
    return [a + b for a, b in zip(into, other, strict=False)]


def merge_kinds(many: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-kind figures of several samples, added up."""
    out: dict[str, dict[str, Any]] = {}
    for kinds in many:
        for kind, f in kinds.items():
            m = out.setdefault(kind, {"finished": 0, "failed": 0, "duration": [], "queued": [],
                                      "duration_sum": 0.0})
            m["finished"] += f.get("finished", 0)
            m["failed"] += f.get("failed", 0)
            m["duration"] = _add(m["duration"], f.get("duration") or [])
            m["queued"] = _add(m["queued"], f.get("queued") or [])
            m["duration_sum"] += f.get("duration_sum", 0.0)
    return out


def kind_figures(kinds: dict[str, dict[str, Any]], seconds: float) -> dict[str, dict[str, Any]]:
    """What the page and the API show per kind: throughput, failure rate, percentiles."""
    out = {}
    for kind, f in sorted(kinds.items()):
        n = f["finished"]
        out[kind] = {
            "finished": n, "failed": f["failed"],
            "per_minute": round(n / (seconds / 60), 3) if seconds else None,
            "failure_rate": round(f["failed"] / n, 3) if n else None,
            "p50": percentile(f["duration"], 0.5), "p95": percentile(f["duration"], 0.95),
            "p99": percentile(f["duration"], 0.99),
            "queued_p50": percentile(f["queued"], 0.5), "queued_p95": percentile(f["queued"], 0.95),
            "duration_sum": round(f["duration_sum"], 3),
        }
    return out


def kind_rows(kinds: dict[str, dict[str, Any]], epoch: int, resolution: str) -> list[dict[str, Any]]:
    rows = []
    for kind, f in kinds.items():
        row = {"epoch": epoch, "resolution": resolution, "kind": kind, "finished": f["finished"],
               "failed": f["failed"], "duration_sum": float(f["duration_sum"])}
        row.update(zip(DURATION_COLUMNS, f["duration"] or [0] * len(BOUNDS), strict=True))
        row.update(zip(QUEUED_COLUMNS, f["queued"] or [0] * len(BOUNDS), strict=True))
        rows.append(row)
    return rows


def kind_of_row(row: Any) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    return {"finished": int(m["finished"]), "failed": int(m["failed"]),
            "duration_sum": float(m["duration_sum"] or 0),
            "duration": [int(m[c] or 0) for c in DURATION_COLUMNS],
            "queued": [int(m[c] or 0) for c in QUEUED_COLUMNS]}


# -- taking a sample --------------------------------------------------------------------------
@reads
def _figures(conn: sa.Connection, until: datetime, period: float) -> dict[str, Any]:
    """Queue depth per status, and the jobs finished since the previous sample (or in the
    last ``period`` seconds, for the first) per kind."""
    last = conn.execute(sa.select(sa.func.max(SAMPLE.c.at))
                        .where(SAMPLE.c.resolution == "raw")).scalar()
    since = last if last is not None and last < until else until - timedelta(seconds=period)
    queue: dict[str, int] = {}
    for status, n in conn.execute(sa.select(COUNT.c.status, sa.func.sum(COUNT.c.n))
                                  .group_by(COUNT.c.status)):
        queue[status] = int(n or 0)
    kinds: dict[str, dict[str, Any]] = {}
    stmt = sa.select(JOB.c.kind, JOB.c.status, JOB.c.created_at, JOB.c.started_at,
                     JOB.c.finished_at).where(JOB.c.finished_at > since, JOB.c.finished_at <= until)
    for kind, status, created, started, finished in conn.execute(stmt):
        f = kinds.setdefault(kind, {"finished": 0, "failed": 0, "duration": [0] * len(BOUNDS),
                                    "queued": [0] * len(BOUNDS), "duration_sum": 0.0})
        f["finished"] += 1
        f["failed"] += status == _FAILED
        if started is not None and finished is not None:
            seconds = max(0.0, (finished - started).total_seconds())
            f["duration"][bucket_of(seconds)] += 1
            f["duration_sum"] += seconds
        if started is not None and created is not None:
            f["queued"][bucket_of(max(0.0, (started - created).total_seconds()))] += 1
    return {"queue": queue, "kinds": kinds, "since": since}


def epoch_of(at: datetime) -> int:
    return int(at.timestamp())


@operation
def insert_sample(conn: sa.Connection, values: dict[str, Any],
                  kinds: dict[str, dict[str, Any]] | None = None) -> int:
    values = {**values, "epoch": epoch_of(values["at"])}
    sample_id = int(conn.execute(sa.insert(SAMPLE).values(**values).returning(SAMPLE.c.id)).scalar_one())
    rows = kind_rows(kinds or {}, values["epoch"], values["resolution"])
    if rows:
        conn.execute(sa.insert(HEALTH_KIND), rows)
    return sample_id


async def _timed(awaitable: Any, limit: float = 2.0) -> tuple[bool, float | None, str | None]:
    began = time.perf_counter()
    try:
        async with asyncio.timeout(limit):  # not wait_for: on 3.11 it can lose a cancel
            await awaitable
    except Exception as exc:  # a component down is what we report, not an error of ours
        return False, None, f"{type(exc).__name__}: {exc}"[:300]
    return True, round((time.perf_counter() - began) * 1000, 3), None


async def web_lags(redis: Any) -> dict[str, dict[str, Any]]:
    """Each web process's latest lag report (those silent for a while have expired)."""
    out: dict[str, dict[str, Any]] = {}
    keys = [k async for k in redis.scan_iter(LAG_KEY_PREFIX + "*")]
    if keys:
        for key, raw in zip(keys, await redis.mget(keys), strict=True):
            if raw:
                name = (key.decode() if isinstance(key, bytes) else key)[len(LAG_KEY_PREFIX):]
                out[name] = json.loads(raw)
    return out


async def workers_alive(redis: Any) -> list[str]:
    keys = [k async for k in redis.scan_iter(WORKER_KEY_PREFIX + "*")]
    return sorted((k.decode() if isinstance(k, bytes) else k)[len(WORKER_KEY_PREFIX):] for k in keys)


async def take_sample(engine: Any, now: datetime | None = None) -> dict[str, Any]:
    """Measure and store one sample; its values."""
    now = now or utcnow()
    db_ok, db_ms, db_error = await _timed(engine.db.ping())
    redis_ok, redis_ms, redis_error = await _timed(engine.redis.ping())
    workers: list[str] = []
    lags: dict[str, dict[str, Any]] = {}
    if redis_ok:
        try:
            workers = await workers_alive(engine.redis)
            lags = await web_lags(engine.redis)
        except (RedisError, OSError):
            pass
    figures = await _figures(engine.db, now, ops_settings().health_sample_seconds)
    since = figures["since"]
    queue = figures["queue"]
    kinds = figures["kinds"]
    values = {
        "at": now, "resolution": "raw", "samples": 1, "db_ok": db_ok, "redis_ok": redis_ok,
        "db_ms": db_ms, "redis_ms": redis_ms, "workers": len(workers),
        "queue_pending": queue.get(Status.PENDING.value, 0),
        "queue_active": sum(queue.get(s, 0) for s in _ACTIVE),
        "lag_ms": max((v.get("max_ms") or 0.0 for v in lags.values()), default=None),
        "finished": sum(k["finished"] for k in kinds.values()),
        "failed": sum(k["failed"] for k in kinds.values()),
        "data": {"queue": queue, "lags": lags, "workers": workers,
                 "errors": {k: v for k, v in (("database", db_error), ("redis", redis_error)) if v},
                 "seconds": round((now - since).total_seconds(), 3)},
    }
    values["id"] = await insert_sample(engine.db, values, kinds)
    values["kinds"] = kinds
    return values


# -- retention and downsampling ---------------------------------------------------------------
def _avg(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [(r[key], r["samples"]) for r in rows if r[key] is not None]
    weight = sum(w for _, w in vals)
    return round(sum(v * w for v, w in vals) / weight, 3) if weight else None


def combine(rows: list[dict[str, Any]], at: datetime, resolution: str) -> dict[str, Any]:
    """Several samples as one: averages of latencies and depths, the worst lag and the fewest
    workers seen, every finished job counted."""
    lag = [r["lag_ms"] for r in rows if r["lag_ms"] is not None]
    return {
        "at": at, "epoch": epoch_of(at), "resolution": resolution,
        "samples": sum(r["samples"] for r in rows),
        "db_ok": all(r["db_ok"] for r in rows), "redis_ok": all(r["redis_ok"] for r in rows),
        "db_ms": _avg(rows, "db_ms"), "redis_ms": _avg(rows, "redis_ms"),
        "workers": min(r["workers"] for r in rows),
        "queue_pending": round(_avg(rows, "queue_pending") or 0),
        "queue_active": round(_avg(rows, "queue_active") or 0),
        "lag_ms": max(lag) if lag else None,
        "finished": sum(r["finished"] for r in rows), "failed": sum(r["failed"] for r in rows),
        "data": {"down": sum(r["samples"] for r in rows if not (r["db_ok"] and r["redis_ok"]))},
    }


_COLUMNS = [c for c in SAMPLE.c if c.name != "id"]
_LIGHT = [c for c in _COLUMNS if c.name != "data"]


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in result]


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


@operation
def prune(conn: sa.Connection, now: datetime, retention_days: float,
          raw_hours: float) -> dict[str, int]:
    """Delete samples past retention (whole hours: an hourly row is stamped with its hour's
    start); fold raw samples of whole hours older than ``raw_hours`` into one ``hour`` row
    each (and their per-kind rows into one per kind and hour)."""
    expired = epoch_of(_hour(now - timedelta(days=retention_days)))
    deleted = conn.execute(sa.delete(SAMPLE).where(SAMPLE.c.epoch < expired)).rowcount or 0
    conn.execute(sa.delete(HEALTH_KIND).where(HEALTH_KIND.c.epoch < expired))
    cutoff = epoch_of(_hour(now - timedelta(hours=raw_hours)))
    old = _rows(conn.execute(sa.select(SAMPLE.c.id, *_LIGHT).where(
        SAMPLE.c.resolution == "raw", SAMPLE.c.epoch < cutoff).order_by(SAMPLE.c.epoch)))
    by_hour: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for row in old:
        by_hour[_hour(row["at"])].append(row)
    for hour, rows in by_hour.items():
        conn.execute(sa.insert(SAMPLE).values(**combine(rows, hour, "hour")))
    kinds_by_hour: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    raw_kinds = (HEALTH_KIND.c.resolution == "raw") & (HEALTH_KIND.c.epoch < cutoff)
    for row in conn.execute(sa.select(HEALTH_KIND).where(raw_kinds)):
        kinds_by_hour[row.epoch - row.epoch % 3600][row.kind].append(kind_of_row(row))
    for hour_epoch, kinds in kinds_by_hour.items():
        merged = merge_kinds([{kind: f} for kind, fs in kinds.items() for f in fs])
        conn.execute(sa.insert(HEALTH_KIND), kind_rows(merged, hour_epoch, "hour"))
    conn.execute(sa.delete(HEALTH_KIND).where(raw_kinds))
    if old:
        ids = [r["id"] for r in old]
        for i in range(0, len(ids), 500):
            conn.execute(sa.delete(SAMPLE).where(SAMPLE.c.id.in_(ids[i:i + 500])))
    return {"deleted": int(deleted), "downsampled": len(old), "hours": len(by_hour)}


async def sample_and_prune(engine: Any) -> None:
    """The periodic work: one sample, then retention; tells the open operations pages."""
    settings = ops_settings()
    sample = await take_sample(engine)
    await prune(engine.db, sample["at"], settings.health_retention_days, settings.health_raw_hours)
    # the operations page's topic is per window (opspage:1h, ...) and each kind's page has its
    # metrics panel (opskind:<kind>): tell each
    topics = (*(f"opspage:{w}" for w in WINDOWS), *(f"opskind:{k}" for k in kind_names()))
    await engine.publish(("health", topics, {"id": sample["id"], "at": sample["at"].isoformat()}))


# -- reading the history ----------------------------------------------------------------------
@reads
def samples_between(conn: sa.Connection, start: datetime, end: datetime,
                    with_data: bool = True) -> list[dict[str, Any]]:
    cols = _COLUMNS if with_data else _LIGHT
    return _rows(conn.execute(sa.select(*cols).where(
        SAMPLE.c.epoch > epoch_of(start), SAMPLE.c.epoch <= epoch_of(end)).order_by(SAMPLE.c.epoch)))


@reads
def latest_sample(conn: sa.Connection) -> dict[str, Any] | None:
    row = conn.execute(sa.select(SAMPLE.c.id, *_COLUMNS).where(SAMPLE.c.resolution == "raw")
                       .order_by(SAMPLE.c.epoch.desc(), SAMPLE.c.id.desc()).limit(1)).first()
    return dict(row._mapping) if row else None


_AVERAGED = ("db_ms", "redis_ms", "workers", "queue_pending", "queue_active")


def _weighted(name: str) -> tuple[Any, Any]:
    """sum(value × samples) and sum(samples where there is a value): averages that add up
    across buckets and windows."""
    col, w = SAMPLE.c[name], SAMPLE.c.samples
    return (sa.func.sum(col * w * 1.0).label(f"{name}_sum"),
            sa.func.sum(sa.case((col.is_not(None), w), else_=0)).label(f"{name}_w"))


_AGGREGATES = (
    sa.func.sum(SAMPLE.c.samples).label("samples"),
    *(agg for name in _AVERAGED for agg in _weighted(name)),
    sa.func.max(SAMPLE.c.lag_ms).label("lag_ms"), sa.func.min(SAMPLE.c.workers).label("workers_min"),
    sa.func.sum(SAMPLE.c.finished).label("finished"), sa.func.sum(SAMPLE.c.failed).label("failed"),
    sa.func.sum(sa.case((SAMPLE.c.db_ok & SAMPLE.c.redis_ok, 0), else_=SAMPLE.c.samples)).label("down"),
)


def _num(value: Any, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def _in(start: int, end: int) -> Any:
    return (SAMPLE.c.epoch > start) & (SAMPLE.c.epoch <= end)


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Bucket aggregates added up into the window's."""
    out: dict[str, Any] = {"samples": 0, "finished": 0, "failed": 0, "down": 0}
    for name in _AVERAGED:
        out[f"{name}_sum"] = out[f"{name}_w"] = 0
    lags = [r["lag_ms"] for r in rows if r["lag_ms"] is not None]
    out["lag_ms"] = max(lags) if lags else None
    for r in rows:
        for key in ("samples", "finished", "failed", "down",
                    *(f"{n}_{x}" for n in _AVERAGED for x in ("sum", "w"))):
            out[key] += float(r[key] or 0)
    return out


def _avg_of(row: dict[str, Any], name: str, digits: int = 3) -> float | None:
    weight = row[f"{name}_w"]
    return round(float(row[f"{name}_sum"]) / float(weight), digits) if weight else None


@reads
def _window_figures(conn: sa.Connection, start: int, end: int, before: int,
                    bucket: int) -> dict[str, Any]:
    """In one read: the window's chart buckets and per-kind sums, and the previous window's
    totals, all added up by the database."""
    prev = conn.execute(sa.select(*_AGGREGATES).where(_in(before, start))).one()._mapping
    b = ((SAMPLE.c.epoch - start) // bucket).label("b")
    points = [dict(r._mapping) for r in conn.execute(
        sa.select(b, *_AGGREGATES).where(_in(start, end)).group_by(b).order_by(b))]
    k = HEALTH_KIND.c
    sums = [sa.func.sum(k[c]).label(c) for c in ("finished", "failed", "duration_sum",
                                                 *DURATION_COLUMNS, *QUEUED_COLUMNS)]
    kinds = {r.kind: kind_of_row(r) for r in conn.execute(
        sa.select(k.kind, *sums).where(k.epoch > start, k.epoch <= end).group_by(k.kind))}
    return {"now": _total(points), "prev": dict(prev), "points": points, "kinds": kinds}


def summarize(row: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A window's figures in one: what the trends compare."""
    total = int(row.get("samples") or 0)
    if not total:
        return {"samples": 0}
    finished = int(row["finished"] or 0)
    failed = int(row["failed"] or 0)
    return {
        "samples": total, "db_ms": _avg_of(row, "db_ms"), "redis_ms": _avg_of(row, "redis_ms"),
        "lag_ms": _num(row["lag_ms"]), "workers": _avg_of(row, "workers"),
        "queue_pending": _avg_of(row, "queue_pending"), "finished": finished, "failed": failed,
        "per_minute": round(finished / (seconds / 60), 3),
        "failure_rate": round(failed / finished, 3) if finished else None,
        "availability": round(1 - int(row["down"] or 0) / total, 4),
    }


# metric -> True when a higher value is better
TREND_METRICS: dict[str, bool] = {
    "db_ms": False, "redis_ms": False, "lag_ms": False, "queue_pending": False,
    "failure_rate": False, "per_minute": True, "availability": True, "workers": True,
}


def trends(now: dict[str, Any], before: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each metric now and in the previous window: better, worse or same (within 5 %)."""
    out = {}
    for metric, higher_is_better in TREND_METRICS.items():
        a, b = now.get(metric), before.get(metric)
        if a is None or b is None:
            direction = "unknown"
        elif abs(a - b) <= 0.05 * max(abs(a), abs(b)) or a == b:
            direction = "same"
        else:
            direction = "better" if (a > b) == higher_is_better else "worse"
        change = round((a - b) / b, 3) if a is not None and b not in (None, 0) else None
        out[metric] = {"now": a, "before": b, "change": change, "direction": direction}
    return out


def chart_point(row: dict[str, Any], start: datetime, bucket: int) -> dict[str, Any]:
    finished = int(row["finished"] or 0)
    return {
        "at": (start + timedelta(seconds=(int(row["b"]) + 1) * bucket)).isoformat(),
        "db_ms": _avg_of(row, "db_ms"), "redis_ms": _avg_of(row, "redis_ms"),
        "lag_ms": _num(row["lag_ms"]), "workers": int(row["workers_min"] or 0),
        "queue_pending": _avg_of(row, "queue_pending", 2),
        "queue_active": _avg_of(row, "queue_active", 2),
        "finished": finished, "failed": int(row["failed"] or 0),
        "per_minute": round(finished / (bucket / 60), 3), "down": bool(row["down"]),
    }


@dataclass(frozen=True)
class _Span:
    """A window ending now: its length, chart bucket, first and last epoch second."""

    now: datetime
    seconds: int
    bucket: int
    start_epoch: int
    end: int

    @classmethod
    def of(cls, window: str, now: datetime | None) -> _Span:
        span, bucket = WINDOWS[window]
        now = now or utcnow()
        end = epoch_of(now)
        seconds = int(span.total_seconds())
        return cls(now, seconds, bucket, end - seconds, end)

    @property
    def start_at(self) -> datetime:
        return datetime.fromtimestamp(self.start_epoch, self.now.tzinfo)


async def history(db: Any, window: str, now: datetime | None = None) -> dict[str, Any]:
    """The window's chart points, summary, per-kind figures and trends against the window
    before it."""
    w = _Span.of(window, now)
    seconds, bucket, start_at = w.seconds, w.bucket, w.start_at
    figures = await _window_figures(db, w.start_epoch, w.end, w.start_epoch - seconds, bucket)
    summary = summarize(figures["now"], seconds)
    previous = summarize(figures["prev"], seconds)
    start = w.now - timedelta(seconds=seconds)
    return {
        "window": window, "from": start.isoformat(), "to": w.now.isoformat(),
        "bucket_seconds": bucket,
        "points": [chart_point(r, start_at, bucket) for r in figures["points"]],
        "summary": summary, "previous": previous, "trends": trends(summary, previous),
        "kinds": kind_figures(figures["kinds"], seconds),
    }


@reads
def _kind_buckets(conn: sa.Connection, kind: str, start: int, end: int,
                  bucket: int) -> list[tuple[int, dict[str, Any]]]:
    """One kind's figures per chart bucket of a window, added up by the database."""
    k = HEALTH_KIND.c
    b = ((k.epoch - start) // bucket).label("b")
    sums = [sa.func.sum(k[c]).label(c) for c in ("finished", "failed", "duration_sum",
                                                 *DURATION_COLUMNS, *QUEUED_COLUMNS)]
    stmt = (sa.select(b, *sums).where(k.kind == kind, k.epoch > start, k.epoch <= end)
            .group_by(b).order_by(b))
    return [(int(row.b), kind_of_row(row)) for row in conn.execute(stmt)]


async def kind_history(db: Any, kind: str, window: str, now: datetime | None = None) -> dict[str, Any]:
    """One job kind over a window: chart points per bucket (finished per minute, failed,
    duration p95, time queued p50) and the window's figures (as /operations shows per kind)."""
    w = _Span.of(window, now)
    seconds, bucket, start_at = w.seconds, w.bucket, w.start_at
    buckets = await _kind_buckets(db, kind, w.start_epoch, w.end, bucket)
    points = [{"at": (start_at + timedelta(seconds=(b + 1) * bucket)).isoformat(),
               "finished": f["finished"], "failed": f["failed"],
               "per_minute": round(f["finished"] / (bucket / 60), 3),
               "p95": percentile(f["duration"], 0.95), "queued_p50": percentile(f["queued"], 0.5)}
              for b, f in buckets]
    total = merge_kinds([{kind: f} for _, f in buckets])
    return {"kind": kind, "window": window, "from": start_at.isoformat(), "to": w.now.isoformat(),
            "bucket_seconds": bucket, "points": points,
            "figures": kind_figures(total, seconds).get(kind)}


# A window's history changes when a sample lands (every 30 s by default), not per request:
# kept per (window, newest sample) for a few seconds, so pages and scrapers polling it share
# one computation (bounded and counted like every cache; values are read-only).
_HISTORY: BoundedCache[tuple[str, int | None, str], Any] = BoundedCache(
    "ops.history", maxsize=64, ttl=5)


@reads
def _newest_id(conn: sa.Connection) -> int | None:
    return conn.execute(sa.select(sa.func.max(SAMPLE.c.id))).scalar()


async def cached_kind_history(db: Any, kind: str, window: str) -> Any:
    """``kind_history`` (read-only) as of the newest sample."""
    newest = await _newest_id(db)
    key = (window, newest, f"kind:{kind}")
    found = _HISTORY.get(key)
    if found is None:
        found = _HISTORY.set(key, await kind_history(db, kind, window))
    return found


async def cached_history(db: Any, window: str, as_json: bool = False) -> Any:
    """``history`` (read-only), or its JSON (bytes), as of the newest sample."""
    newest = await _newest_id(db)
    found = _HISTORY.get((window, newest, "json" if as_json else "data"))
    if found is None:
        value = await history(db, window)
        _HISTORY.set((window, newest, "json"), json.dumps(value).encode())
        found = _HISTORY.set((window, newest, "data"), value)
        if as_json:
            found = _HISTORY.get((window, newest, "json"))
    return found
