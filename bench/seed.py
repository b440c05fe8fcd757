"""Seed a migrated marketdesk database with many job rows and many symbols' daily bars, fast.

For the growth benchmark (bench/growth.py) and anyone who wants to see the app at size:

    uv run python bench/seed.py --database sqlite:///.marketdesk/marketdesk.db --migrate \\
        --jobs 1000000 --symbols 5000 --years 2
    uv run python bench/seed.py --database postgresql://postgres@127.0.0.1:5432/big \\
        --jobs 1000000 --symbols 5000

Jobs: a realistic mix of kinds (prices.download, simulation.run, diagnostics.sleep) and
statuses (mostly finished: completed, some partial, failed, cancelled; some with warnings),
created over the last months, newest last, and a few unfinished ones at the newest end
(one pending simulation, unless ``busy_simulation=False``: the simulation trigger then
answers 400 "busy" after its checks). Ids are random 32-hex like the app's.

Prices: M symbols × the NYSE trading days of the last ``years`` (a random walk each), stored in
``price_bar``, and each symbol's ``price_coverage`` row written by the same upsert the app uses
when it stores bars (``jobs.prices.store._update_coverage``), in the same transaction.

Rows go in through the database's bulk path, not the app's one-row store operations:
SQLite ``executemany`` in large transactions (synchronous=OFF while seeding), PostgreSQL
``COPY`` (asyncpg ``copy_records_to_table``). On SQLite the ``job_count`` triggers of
migration 0005 keep the per-(kind, status) counts as rows go in; on PostgreSQL they are off
during the one COPY transaction (a million upserts of the same few rows in one transaction is
quadratic there) and the counts of the rows copied are added at its end. ``verify_counts``
checks the kept counts against a ``GROUP BY`` of the table afterwards. Seeding adds to what is
there (bars already held are kept as they are).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from bisect import bisect
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from jobs.db import Database, is_sqlite, normalize_url, today_utc, utcnow  # noqa: E402
from jobs.models import JOB_COLUMNS  # noqa: E402
from jobs.prices.calendar import trading_days  # noqa: E402

DOWNLOAD, SIMULATION, SLEEP = "prices.download", "simulation.run", "diagnostics.sleep"
# (kind, weight): most jobs are downloads, as on a desk that refreshes prices all day
KIND_MIX = ((DOWNLOAD, 0.60), (SLEEP, 0.25), (SIMULATION, 0.15))
# finished statuses and their weights
FINISHED_MIX = (("completed", 0.85), ("partial", 0.04), ("failed", 0.06), ("cancelled", 0.05))
WARNED_COMPLETED = 0.02  # completed jobs that still carry a warning (partial ones always do)
BAR_COLUMNS = ("symbol", "day", "open", "high", "low", "close", "volume", "provider", "fetched_at")


@dataclass
class Seeded:
    jobs: int = 0
    bars: int = 0
    symbols: int = 0
    jobs_seconds: float = 0.0
    bars_seconds: float = 0.0
    # a few real ids, for the benchmark's requests: the newest, one near the oldest end
    newest_id: str = ""
    old_id: str = ""

    @property
    def seconds(self) -> float:
        return self.jobs_seconds + self.bars_seconds


# -- what gets stored -------------------------------------------------------------------------
def symbol_names(count: int) -> list[str]:
    """``count`` distinct tickers (A, B, ..., Z, AA, AB, ...: they pass SYMBOL_RE)."""
    out: list[str] = []
    width = 1
    while len(out) < count:
        n = 26 ** width
        for i in range(min(n, count - len(out))):
            name = ""
            for _ in range(width):
                i, r = divmod(i, 26)
                name = chr(65 + r) + name
            out.append(name)
        width += 1
    return out


def _pick(rng: random.Random, mix: tuple[tuple[str, float], ...]) -> Callable[[], str]:
    """A function drawing a name of ``mix`` by its weight."""
    names = [name for name, _ in mix]
    cum, total = [], 0.0
    for _, w in mix:
        total += w
        cum.append(total)
    last = len(names) - 1

    def pick() -> str:
        return names[min(bisect(cum, rng.random() * total), last)]
    return pick


def job_rows(count: int, *, now: datetime, days: int = 180, unfinished: int = 5,
             busy_simulation: bool = True, seed: int = 1,
             stamp: Callable[[datetime], Any] = lambda d: d.replace(tzinfo=UTC)
             ) -> Iterator[tuple[Any, ...]]:
    """``count`` job rows (values in ``JOB_COLUMNS`` order; each time, naive UTC, through ``stamp``),
    created from ``days`` ago to ``now``, oldest first; the newest ``unfinished`` are not
    finished (the very newest a pending simulation when ``busy_simulation``)."""
    from jobs.simulation import catalog

    models = [spec.name for spec in catalog.enabled_models()]
    rng = random.Random(seed)
    kind_of, finished_as = _pick(rng, KIND_MIX), _pick(rng, FINISHED_MIX)
    syms = symbol_names(300)
    params_pool: dict[str, list[str]] = {DOWNLOAD: [], SIMULATION: [], SLEEP: []}
    for i in range(200):
        end = now.date() - timedelta(days=rng.randrange(1, 400))
        start = end - timedelta(days=rng.choice((7, 30, 90, 365)))
        params_pool[DOWNLOAD].append(json.dumps(
            {"symbols": rng.sample(syms, rng.randint(1, 10)), "start_date": start.isoformat(),
             "end_date": end.isoformat(), "provider": rng.choice((None, "synthetic"))}))
        params_pool[SIMULATION].append(json.dumps(
            {"end_date": end.isoformat(), "model_starts": {m: start.isoformat() for m in models},
             "replace_existing": i % 7 == 0, "start_date": start.isoformat()}))
        params_pool[SLEEP].append(json.dumps({"steps": 1 + i % 20, "step_seconds": 0.5}))
    results = {DOWNLOAD: json.dumps({"saved": 420, "symbols": 5, "skipped": 0}),
               SIMULATION: json.dumps({"model_days": 63, "failed": 0}),
               SLEEP: json.dumps({"steps": 10})}
    errors = ("ProviderError: alphavantage answered HTTP 503 for MSFT",
              "ProviderError: no data for ZZZZ from 2025-01-02 to 2025-01-10",
              "TimeoutError: provider did not answer in 30 s",
              "worker lost: no heartbeat for 30 s after 3 attempts")
    warnings = (json.dumps(["MSFT: no bars from 2025-01-02 to 2025-01-03 (provider had none)"]),
                json.dumps(["2 of 5 symbols had gaps; kept what arrived", "AAPL: 1 day missing"]))
    no_warnings = "[]"
    span = days * 86400.0
    t0 = now.replace(tzinfo=None) - timedelta(seconds=span)
    step = span / max(count, 1)
    for i in range(count):
        created = t0 + timedelta(seconds=i * step + rng.random() * step * 0.9)
        job_id = f"{rng.getrandbits(128):032x}"
        arq_id = f"{job_id}.{rng.getrandbits(48):012x}"
        left = count - i  # 1 for the newest
        if left <= unfinished:
            kind = SIMULATION if (busy_simulation and left == 1) else (DOWNLOAD if left % 2 else SLEEP)
            status = "pending" if left == 1 or left % 3 == 0 else (
                "downloading_data" if kind == DOWNLOAD else "running")
        else:
            kind, status = kind_of(), finished_as()
        params = rng.choice(params_pool[kind])
        if kind == SIMULATION and left == 1 and busy_simulation:  # the same at every size
            params = json.dumps({"end_date": (now.date() - timedelta(days=1)).isoformat(),
                                 "model_starts": {m: (now.date() - timedelta(days=14)).isoformat()
                                                  for m in models},
                                 "replace_existing": False, "start_date": None})
        started = finished = heartbeat = None
        warned, error, result, phase = no_warnings, None, None, ""
        done = total = 0
        attempts = 0
        worker = None
        if status != "pending" and not (status == "cancelled" and rng.random() < 0.5):
            attempts = 1 if rng.random() < 0.97 else 2
            started = created + timedelta(seconds=rng.uniform(0.01, 3.0))
            worker = f"worker-{rng.randrange(1, 4)}"
            total = 10 if kind != SIMULATION else 63
            heartbeat = started
        if status in ("completed", "partial", "failed", "cancelled"):
            begun = started or created
            finished = begun + timedelta(seconds=rng.uniform(0.2, 30.0 if kind != SIMULATION else 300.0))
            heartbeat = finished if started else None
            if status == "completed":
                done, phase, result = total, "Done", results[kind]
                if rng.random() < WARNED_COMPLETED:
                    warned = rng.choice(warnings)
            elif status == "partial":
                done, phase, result, warned = max(total - 2, 0), "Done with gaps", results[kind], \
                    rng.choice(warnings)
            elif status == "failed":
                error = rng.choice(errors)
                done, phase = total // 2, f"Failed: {error[:60]}"
            else:
                done, phase = total // 3, "Cancelled" if started else "Cancelled before it started"
        elif status != "pending":
            done, phase = total // 2, "Working"
        at_created = stamp(created)
        at_started = None if started is None else stamp(started)
        at_finished = None if finished is None else stamp(finished)
        at_heartbeat = at_finished if heartbeat is finished else at_started
        yield (job_id, kind, params, status, done, total, phase, warned, error, result, attempts,
               arq_id, worker, at_created, at_finished or at_heartbeat or at_created,
               at_started, at_finished, at_heartbeat,
               at_finished if status == "cancelled" else None, None)


def bar_rows(symbols: list[str], days: list[date], *, seed: int = 1,
             fetched: Any = None, day_value: Callable[[date], Any] = lambda d: d
             ) -> Iterator[tuple[Any, ...]]:
    """Daily bars: a random walk per symbol over ``days`` (values in BAR_COLUMNS order)."""
    rng = random.Random(seed)
    day_values = [day_value(d) for d in days]
    for symbol in symbols:
        price = rng.uniform(5, 500)
        for d in day_values:
            move = rng.gauss(0, 0.015)
            open_ = price
            price = max(0.5, price * (1 + move))
            spread = abs(move) * price + price * 0.002
            yield (symbol, d, round(open_, 4), round(max(open_, price) + spread, 4),
                   round(min(open_, price) - spread, 4), round(price, 4),
                   rng.randrange(10_000, 5_000_000), "synthetic", fetched)


def bar_days(years: float) -> list[date]:
    """The NYSE trading days of the last ``years`` years, up to yesterday (UTC)."""
    end = today_utc() - timedelta(days=1)
    return trading_days(end - timedelta(days=round(365.25 * years) - 1), end)


# -- coverage: the app's own upsert -----------------------------------------------------------
def _coverage_upsert(conn: sa.Connection, symbols: list[str]) -> None:
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from jobs.prices.store import _update_coverage

    insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    for i in range(0, len(symbols), 500):  # the IN list of one statement stays short
        _update_coverage(conn, set(symbols[i:i + 500]), insert)


# -- SQLite -----------------------------------------------------------------------------------
def _sqlite_stamp(d: datetime) -> str:
    """A naive UTC time as SQLAlchemy's DATETIME stores it on SQLite (UTCDateTime's text)."""
    return d.isoformat(" ", "microseconds")


def _sqlite_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the transaction is begun below: DDL included
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=OFF")  # a seed that crashes is seeded again
        cur.execute("PRAGMA cache_size=-262144")  # 256 MiB: the random ids' index stays in memory
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    return engine


def _sqlite_seed(url: str, jobs: int, symbols: int, years: float, busy_simulation: bool,
                 seed: int, batch: int, progress: Callable[[str], None]) -> Seeded:
    out = Seeded()
    engine = _sqlite_engine(url)
    placeholders = ", ".join("?" for _ in JOB_COLUMNS)
    insert_job = f"INSERT INTO job ({', '.join(JOB_COLUMNS)}) VALUES ({placeholders})"
    insert_bar = (f"INSERT INTO price_bar ({', '.join(BAR_COLUMNS)}) VALUES "
                  f"({', '.join('?' for _ in BAR_COLUMNS)}) ON CONFLICT (symbol, day) DO NOTHING")
    try:
        t = time.perf_counter()
        rows = job_rows(jobs, now=utcnow(), busy_simulation=busy_simulation, seed=seed,
                        stamp=_sqlite_stamp)
        # one transaction: the job table's secondary indexes are dropped first and built again
        # at the end when many rows go in (sorting once costs a third of updating them row by
        # row); a seed that stops half-way leaves the database as it was
        with engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            indexes = raw.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                  "AND tbl_name = 'job' AND sql IS NOT NULL").fetchall()
            indexes = indexes if jobs >= 50_000 else []
            for name, _ in indexes:
                raw.execute(f'DROP INDEX "{name}"')
            while chunk := [r for _, r in zip(range(batch), rows, strict=False)]:
                if not out.old_id:
                    out.old_id = chunk[min(len(chunk) - 1, 10)][0]
                raw.executemany(insert_job, chunk)
                out.jobs += len(chunk)
                out.newest_id = chunk[-1][0]
                progress(f"jobs {out.jobs:,}/{jobs:,}")
            for name, sql in indexes:
                progress(f"jobs: building {name}")
                raw.execute(sql)
        out.jobs_seconds = time.perf_counter() - t

        t = time.perf_counter()
        names = symbol_names(symbols)
        days = bar_days(years)
        fetched = _sqlite_stamp(utcnow().replace(tzinfo=None))
        per_tx = max(1, batch // max(len(days), 1))
        for i in range(0, len(names), per_tx):
            group = names[i:i + per_tx]
            bars = list(bar_rows(group, days, seed=seed + i, fetched=fetched,
                                 day_value=date.isoformat))
            with engine.begin() as conn:
                conn.connection.driver_connection.executemany(insert_bar, bars)  # type: ignore[union-attr]
                _coverage_upsert(conn, group)
            out.bars += len(bars)
            out.symbols += len(group)
            progress(f"bars {out.bars:,} ({out.symbols:,}/{symbols:,} symbols)")
        out.bars_seconds = time.perf_counter() - t
        with engine.begin() as conn:  # statistics for the planner, as `migrate` leaves them
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return out


# -- PostgreSQL -------------------------------------------------------------------------------
async def _postgres_seed(url: str, jobs: int, symbols: int, years: float, busy_simulation: bool,
                         seed: int, batch: int, progress: Callable[[str], None]) -> Seeded:
    import asyncpg

    out = Seeded()
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    db = Database(url)
    try:
        t = time.perf_counter()
        rows = job_rows(jobs, now=utcnow(), busy_simulation=busy_simulation, seed=seed)
        counts: Counter[tuple[str, str]] = Counter()
        # one transaction; the job_count triggers are off meanwhile and the counts of the rows
        # copied are added at the end: each trigger upsert of the same few job_count rows in one
        # transaction leaves a dead row version the next one steps over (quadratic: 100,000
        # rows took minutes)
        async with conn.transaction():
            await conn.execute("ALTER TABLE job DISABLE TRIGGER USER")
            while chunk := [r for _, r in zip(range(batch), rows, strict=False)]:
                if not out.old_id:
                    out.old_id = chunk[min(len(chunk) - 1, 10)][0]
                await conn.copy_records_to_table("job", records=chunk, columns=list(JOB_COLUMNS))
                counts.update((r[1], r[3]) for r in chunk)
                out.jobs += len(chunk)
                out.newest_id = chunk[-1][0]
                progress(f"jobs {out.jobs:,}/{jobs:,}")
            await conn.executemany(
                "INSERT INTO job_count (kind, status, n) VALUES ($1, $2, $3) "
                "ON CONFLICT (kind, status) DO UPDATE SET n = job_count.n + EXCLUDED.n",
                [(kind, status, n) for (kind, status), n in counts.items()])
            await conn.execute("ALTER TABLE job ENABLE TRIGGER USER")
        out.jobs_seconds = time.perf_counter() - t

        t = time.perf_counter()
        names = symbol_names(symbols)
        days = bar_days(years)
        fetched = utcnow()
        per_tx = max(1, batch // max(len(days), 1))
        for i in range(0, len(names), per_tx):
            group = names[i:i + per_tx]
            bars = list(bar_rows(group, days, seed=seed + i, fetched=fetched))
            async with conn.transaction():  # COPY cannot skip rows held already: via a temp table
                await conn.execute("CREATE TEMP TABLE seed_bar (LIKE price_bar) ON COMMIT DROP")
                await conn.copy_records_to_table("seed_bar", records=bars, columns=list(BAR_COLUMNS))
                await conn.execute("INSERT INTO price_bar SELECT * FROM seed_bar "
                                   "ON CONFLICT (symbol, day) DO NOTHING")
            await db.run(_coverage_upsert, group)
            out.bars += len(bars)
            out.symbols += len(group)
            progress(f"bars {out.bars:,} ({out.symbols:,}/{symbols:,} symbols)")
        out.bars_seconds = time.perf_counter() - t
        # what autovacuum would do after this many new rows: statistics for the planner
        await conn.execute("ANALYZE job")
        await conn.execute("ANALYZE job_count")
        await conn.execute("ANALYZE price_bar")
        await conn.execute("ANALYZE price_coverage")
    finally:
        await conn.close()
        await db.dispose()
    return out


# -- checks -----------------------------------------------------------------------------------
def verify_counts(url: str) -> dict[tuple[str, str], int]:
    """The job_count rows must equal a GROUP BY of the job table (raises if not); the counts."""
    db = Database(url)

    def read(conn: sa.Connection) -> tuple[dict[Any, int], dict[Any, int]]:
        actual = {(k, s): int(n) for k, s, n in conn.execute(
            sa.text("SELECT kind, status, count(*) FROM job GROUP BY kind, status"))}
        kept = {(k, s): int(n) for k, s, n in conn.execute(
            sa.text("SELECT kind, status, n FROM job_count WHERE n <> 0"))}
        return actual, kept
    try:
        actual, kept = db.run_blocking(read)
    finally:
        db.dispose_blocking()
    if actual != kept:
        raise AssertionError(f"job_count disagrees with the job table: counted {actual}, kept {kept}")
    return actual


def verify_coverage(url: str, sample: list[str]) -> None:
    """The coverage rows of ``sample`` must equal what a GROUP BY of their bars says."""
    db = Database(url)

    def read(conn: sa.Connection) -> tuple[dict[str, Any], dict[str, Any]]:
        names = sa.bindparam("names", expanding=True)
        held = {s: (str(a), str(b), int(n)) for s, a, b, n in conn.execute(sa.text(
            "SELECT symbol, min(day), max(day), count(*) FROM price_bar WHERE symbol IN :names "
            "GROUP BY symbol").bindparams(names), {"names": sample})}
        kept = {s: (str(a), str(b), int(n)) for s, a, b, n in conn.execute(sa.text(
            "SELECT symbol, first_day, last_day, days_held FROM price_coverage "
            "WHERE symbol IN :names").bindparams(names), {"names": sample})}
        return held, kept
    try:
        held, kept = db.run_blocking(read)
    finally:
        db.dispose_blocking()
    if held != kept:
        raise AssertionError(f"price_coverage disagrees with price_bar: {held} vs {kept}")


# -- entry points -----------------------------------------------------------------------------
def seed(url: str, *, jobs: int = 0, symbols: int = 0, years: float = 2.0,
         busy_simulation: bool = True, seed: int = 1, batch: int = 100_000,
         progress: Callable[[str], None] | None = None, verify: bool = True) -> Seeded:
    """Add ``jobs`` job rows and ``symbols`` × ``years`` of daily bars (with their coverage)
    to the migrated database at ``url``; checks the kept counts and coverage after."""
    url = normalize_url(url)
    say = progress or (lambda _msg: None)
    if is_sqlite(url):
        out = _sqlite_seed(url, jobs, symbols, years, busy_simulation, seed, batch, say)
    else:
        out = asyncio.run(_postgres_seed(url, jobs, symbols, years, busy_simulation, seed, batch,
                                         say))
    if verify:
        verify_counts(url)
        if symbols:
            names = symbol_names(symbols)
            verify_coverage(url, [names[0], names[len(names) // 2], names[-1]])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", required=True,
                        help="sqlite:///path/marketdesk.db or postgresql://user@host/db")
    parser.add_argument("--migrate", action="store_true", help="run the migrations first")
    parser.add_argument("--jobs", type=int, default=0, help="job rows to add")
    parser.add_argument("--symbols", type=int, default=0, help="symbols of daily bars to add")
    parser.add_argument("--years", type=float, default=2.0, help="years of trading days per symbol")
    parser.add_argument("--no-busy-simulation", action="store_true",
                        help="leave out the pending simulation (the trigger then starts one)")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--batch", type=int, default=100_000, help="rows per transaction")
    args = parser.parse_args()
    url = normalize_url(args.database)
    if args.migrate:
        from jobs.migrate import upgrade

        t = time.perf_counter()
        upgrade(url)
        print(f"migrated in {time.perf_counter() - t:.1f} s", flush=True)
    last = [0.0]

    def progress(msg: str) -> None:
        if time.monotonic() - last[0] > 2:
            last[0] = time.monotonic()
            print(f"  {msg}", flush=True)
    t = time.perf_counter()
    out = seed(url, jobs=args.jobs, symbols=args.symbols, years=args.years,
               busy_simulation=not args.no_busy_simulation, seed=args.seed, batch=args.batch,
               progress=progress)
    print(f"seeded {out.jobs:,} jobs in {out.jobs_seconds:.1f} s and {out.bars:,} bars "
          f"({out.symbols:,} symbols) in {out.bars_seconds:.1f} s; with the checks "
          f"{time.perf_counter() - t:.1f} s in all", flush=True)


if __name__ == "__main__":
    main()
