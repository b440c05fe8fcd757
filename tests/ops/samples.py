"""Generated health samples, as the sampler writes them, for tests and the benchmark."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from jobs.db import operation
from jobs.ops.health import BOUNDS, HEALTH_KIND, SAMPLE, bucket_of, epoch_of, kind_rows


def sample_values(at: datetime, rng: random.Random, resolution: str = "raw") -> dict[str, Any]:
    durations = [0] * len(BOUNDS)
    finished = rng.randint(0, 4)
    failed = rng.randint(0, finished) if rng.random() < 0.2 else 0
    total = 0.0
    for _ in range(finished):
        seconds = rng.uniform(0.2, 8.0)
        durations[bucket_of(seconds)] += 1
        total += seconds
    down = rng.random() < 0.01
    return {
        "at": at, "resolution": resolution, "samples": 1, "db_ok": True, "redis_ok": not down,
        "db_ms": round(rng.uniform(0.3, 3.0), 3),
        "redis_ms": None if down else round(rng.uniform(0.1, 1.0), 3),
        "workers": rng.choice([1, 2, 2, 2]), "queue_pending": rng.randint(0, 5),
        "queue_active": rng.randint(0, 3), "lag_ms": round(rng.uniform(0, 30), 3),
        "finished": finished, "failed": failed,
        "data": {"queue": {"pending": 1}, "lags": {}, "workers": [], "errors": {}, "seconds": 30},
        # not a column: the per-kind rows stored beside it (health_kind)
        "kinds": {"prices.download": {"finished": finished, "failed": failed,
                                      "duration": durations, "queued": [0] * len(BOUNDS),
                                      "duration_sum": total}} if finished else {},
    }


@operation
def insert_samples(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    samples, kinds = [], []
    for row in rows:
        sample = {k: v for k, v in row.items() if k != "kinds"}
        sample["epoch"] = epoch_of(row["at"])
        samples.append(sample)
        kinds += kind_rows(row.get("kinds") or {}, sample["epoch"], row["resolution"])
    for i in range(0, len(samples), 2000):
        conn.execute(sa.insert(SAMPLE), samples[i:i + 2000])
    for i in range(0, len(kinds), 2000):
        conn.execute(sa.insert(HEALTH_KIND), kinds[i:i + 2000])


async def generate(db: Any, now: datetime, days: float, every_seconds: float,
                   seed: int = 7) -> list[dict[str, Any]]:
    """Raw samples every ``every_seconds`` over the ``days`` before ``now``; their values."""
    rng = random.Random(seed)
    count = int(days * 86400 / every_seconds)
    rows = [sample_values(now - timedelta(seconds=every_seconds * (count - i)), rng)
            for i in range(count)]
    await insert_samples(db, rows)
    return rows


async def generate_steady_state(db: Any, now: datetime, retention_days: float = 90,
                                raw_hours: float = 25, every_seconds: float = 30,
                                seed: int = 7) -> None:
    """What the table holds after ``retention_days`` of sampling: hourly rows, then raw
    samples every ``every_seconds`` for the last ``raw_hours``."""
    from jobs.ops.health import combine, merge_kinds

    rng = random.Random(seed)
    per_hour = int(3600 / every_seconds)
    raw_from = (now - timedelta(hours=raw_hours)).replace(minute=0, second=0, microsecond=0)
    hour = (now - timedelta(days=retention_days)).replace(minute=0, second=0, microsecond=0)
    rows = []
    while hour < raw_from:
        raws = [sample_values(hour + timedelta(seconds=every_seconds * i), rng)
                for i in range(per_hour)]
        hourly = combine(raws, hour, "hour")
        hourly["kinds"] = merge_kinds([r["kinds"] for r in raws])
        rows.append(hourly)
        hour += timedelta(hours=1)
    at = raw_from
    while at <= now:
        rows.append(sample_values(at, rng))
        at += timedelta(seconds=every_seconds)
    await insert_samples(db, rows)
