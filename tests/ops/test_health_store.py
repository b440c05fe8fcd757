"""Health samples in the database: retention, hourly downsampling, history and trends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from jobs.db import Database, reads
from jobs.ops import health
from jobs.ops.health import HEALTH_KIND, SAMPLE, epoch_of, history, percentile, prune
from jobs.ops.models import DURATION_COLUMNS
from tests.ops.samples import generate, generate_steady_state

NOW = datetime(2026, 11, 30, 12, 20, 10, tzinfo=UTC)


@reads
def rows(conn: sa.Connection) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(sa.select(SAMPLE).order_by(SAMPLE.c.at))]


@reads
def kind_rows_at(conn: sa.Connection, epoch: int | None) -> dict[str, dict]:
    """The per-kind rows of one hour, or (None) the raw ones older than a day."""
    k = HEALTH_KIND.c
    where = (k.epoch == epoch) if epoch is not None else (
        (k.resolution == "raw") & (k.epoch < epoch_of(NOW - timedelta(hours=26))))
    return {r.kind: dict(r._mapping) for r in conn.execute(sa.select(HEALTH_KIND).where(where))}


async def test_retention_and_downsampling_over_90_days_of_samples(db: Database) -> None:
    # 100 days of samples every 10 minutes (the sampler's 30 s would be 288,000 rows; the
    # folding is the same per hour)
    made = await generate(db, NOW, days=100, every_seconds=600)
    expired = (NOW - timedelta(days=90)).replace(minute=0, second=0)
    kept_window = [r for r in made if r["at"] >= expired]
    result = await prune(db, NOW, retention_days=90, raw_hours=25)
    after = await rows(db)

    assert result["deleted"] == len(made) - len(kept_window)
    assert min(r["at"] for r in after) == expired
    cutoff = (NOW - timedelta(hours=25)).replace(minute=0, second=0, microsecond=0)
    hourly = [r for r in after if r["resolution"] == "hour"]
    raw = [r for r in after if r["resolution"] == "raw"]
    assert all(r["at"] >= cutoff for r in raw)  # recent samples stay as they were taken
    assert all(r["at"] < cutoff for r in hourly)
    assert all(r["at"].minute == 0 and r["at"].second == 0 for r in hourly)
    assert len({r["at"] for r in hourly}) == len(hourly)  # one row per hour
    assert 89 * 24 - 2 <= len(hourly) <= 90 * 24  # every hour of the retained span
    # nothing counted is lost in the folding
    assert sum(r["finished"] for r in after) == sum(r["finished"] for r in kept_window)
    assert sum(r["failed"] for r in after) == sum(r["failed"] for r in kept_window)
    assert sum(r["samples"] for r in after) == len(kept_window)
    # an hourly row is the average of its samples, the worst lag, the fewest workers
    some = hourly[len(hourly) // 2]
    members = [r for r in kept_window if some["at"] <= r["at"] < some["at"] + timedelta(hours=1)]
    assert some["samples"] == len(members) == 6
    assert abs(some["db_ms"] - sum(r["db_ms"] for r in members) / 6) < 0.01
    assert some["lag_ms"] == max(r["lag_ms"] for r in members)
    assert some["workers"] == min(r["workers"] for r in members)
    kinds = await kind_rows_at(db, epoch_of(some["at"]))
    assert kinds["prices.download"]["finished"] == sum(r["finished"] for r in members)
    assert kinds["prices.download"]["resolution"] == "hour"
    assert sum(kinds["prices.download"][c] for c in DURATION_COLUMNS) == sum(
        r["finished"] for r in members)
    assert await kind_rows_at(db, None) == {}  # no raw per-kind row older than the cutoff left
    # all timestamps come back timezone-aware
    assert all(r["at"].tzinfo is not None for r in after)

    # a second pass has nothing to do
    again = await prune(db, NOW, retention_days=90, raw_hours=25)
    assert again == {"deleted": 0, "downsampled": 0, "hours": 0}


async def test_history_per_window_with_trends(db: Database) -> None:
    await generate_steady_state(db, NOW, every_seconds=300)
    for window, points_at_most in (("1h", 60), ("24h", 96), ("30d", 120)):
        hist = await history(db, window, now=NOW)
        assert hist["window"] == window
        assert 0 < len(hist["points"]) <= points_at_most
        assert hist["summary"]["samples"] > 0 and hist["previous"]["samples"] > 0
        assert set(hist["trends"]) == set(health.TREND_METRICS)
        assert all(t["direction"] in ("better", "worse", "same", "unknown")
                   for t in hist["trends"].values())
        kind = hist["kinds"]["prices.download"]
        assert kind["finished"] > 0 and 0.2 <= kind["p50"] <= 8.0
        assert kind["p50"] <= kind["p95"] <= kind["p99"]
        assert datetime.fromisoformat(hist["points"][0]["at"]).tzinfo is not None


async def test_trends_say_better_or_worse_against_the_previous_window(db: Database) -> None:
    import random

    from tests.ops.samples import insert_samples, sample_values

    rng = random.Random(1)
    made = []
    for i in range(120):  # two hours, one sample a minute; the last hour twice as slow
        at = NOW - timedelta(minutes=120 - i) + timedelta(seconds=30)
        values = sample_values(at, rng)
        values.update(db_ms=1.0 if i < 60 else 2.0, failed=0, finished=2, redis_ok=True)
        made.append(values)
    await insert_samples(db, made)
    hist = await history(db, "1h", now=NOW)
    assert hist["trends"]["db_ms"]["direction"] == "worse"
    assert hist["trends"]["db_ms"]["change"] == 1.0
    assert hist["trends"]["per_minute"]["direction"] == "same"


def test_percentiles_from_histograms() -> None:
    hist = [0] * len(health.BOUNDS)
    for seconds in (0.3, 0.4, 0.45, 3.0):
        hist[health.bucket_of(seconds)] += 1
    assert 0.25 <= percentile(hist, 0.5) <= 0.5
    assert 2.5 <= percentile(hist, 0.99) <= 5
    assert percentile([0] * len(health.BOUNDS), 0.5) is None
