"""Reads and writes of the contracts tables (each one store operation)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from jobs.contracts.tables import ContractCatalog, ContractScan, ContractSnapshot
from jobs.db import Prepared, operation, reads, shared_reads
from jobs.models import Job
from jobs.status import UNFINISHED_STATUSES
from jobs.store import _COLUMNS, JOB, _status_in

CATALOG = ContractCatalog.__table__  # type: ignore[attr-defined]
SCAN = ContractScan.__table__  # type: ignore[attr-defined]
SNAPSHOT = ContractSnapshot.__table__  # type: ignore[attr-defined]


def _upsert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], keys: list[str],
            update: list[str]) -> None:
    insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    for i in range(0, len(rows), 200):
        stmt = insert(table).values(rows[i:i + 200])
        conn.execute(stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in update}))


# -- catalog -----------------------------------------------------------------------------------
@reads
def cached_catalog(conn: sa.Connection, exchange: str, var: str
                   ) -> tuple[list[dict[str, Any]], datetime, str] | None:
    row = conn.execute(sa.select(CATALOG.c.contracts, CATALOG.c.cached_at, CATALOG.c.source).where(
        CATALOG.c.exchange == exchange, CATALOG.c.var == var)).first()
    return None if row is None else (list(row[0]), row[1], row[2])


@operation
def save_catalog(conn: sa.Connection, exchange: str, var: str, source: str, cached_at: datetime,
                 contracts: list[dict[str, Any]]) -> None:
    _upsert(conn, CATALOG, [{"exchange": exchange, "var": var, "source": source,
                             "cached_at": cached_at, "contracts": contracts}],
            ["exchange", "var"], ["source", "cached_at", "contracts"])


# -- scan cache --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scan:
    """One symbol folder's date folders as of its ``mtime_ns``."""

    symbol: str
    mtime_ns: int
    n_dates: int
    first_date: date | None
    last_date: date | None
    dates: bytes  # calendar.pack's bits from first_date
    no_data: tuple[str, ...]


@reads
def load_scans(conn: sa.Connection, lake_version: str, symbols: list[str]) -> dict[str, Scan]:
    out: dict[str, Scan] = {}
    wanted = set(symbols)
    stmt = sa.select(SCAN.c.symbol, SCAN.c.mtime_ns, SCAN.c.n_dates, SCAN.c.first_date,
                     SCAN.c.last_date, SCAN.c.dates, SCAN.c.no_data).where(
        SCAN.c.lake_version == lake_version)
    if len(wanted) <= 500:
        stmt = stmt.where(SCAN.c.symbol.in_(sorted(wanted)))
    for row in conn.execute(stmt):
        if row[0] in wanted:
            out[row[0]] = Scan(row[0], int(row[1]), row[2], row[3], row[4], bytes(row[5]),
                               tuple(row[6]))
    return out


@operation
def save_scans(conn: sa.Connection, lake_version: str, scans: list[Scan], gone: list[str],
               now: datetime) -> None:
    if gone:
        conn.execute(sa.delete(SCAN).where(SCAN.c.lake_version == lake_version,
                                           SCAN.c.symbol.in_(gone)))
    rows = [{"lake_version": lake_version, "symbol": s.symbol, "mtime_ns": s.mtime_ns,
             "n_dates": s.n_dates, "first_date": s.first_date, "last_date": s.last_date,
             "dates": s.dates, "no_data": list(s.no_data), "scanned_at": now} for s in scans]
    if rows:
        _upsert(conn, SCAN, rows, ["lake_version", "symbol"],
                ["mtime_ns", "n_dates", "first_date", "last_date", "dates", "no_data", "scanned_at"])


# -- snapshots ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotRow:
    built_at: datetime | None
    payload: str | None
    summary: dict[str, Any] | None
    last_error: str | None
    last_error_kind: str | None
    last_error_at: datetime | None


_SNAPSHOT = Prepared(sa.select(
    SNAPSHOT.c.built_at, SNAPSHOT.c.payload, SNAPSHOT.c.summary, SNAPSHOT.c.last_error,
    SNAPSHOT.c.last_error_kind, SNAPSHOT.c.last_error_at).where(
    SNAPSHOT.c.exchange == sa.bindparam("exchange"), SNAPSHOT.c.var == sa.bindparam("var")))
_META = Prepared(sa.select(
    SNAPSHOT.c.built_at, sa.null(), SNAPSHOT.c.summary, SNAPSHOT.c.last_error,
    SNAPSHOT.c.last_error_kind, SNAPSHOT.c.last_error_at).where(
    SNAPSHOT.c.exchange == sa.bindparam("exchange"), SNAPSHOT.c.var == sa.bindparam("var")))


@reads
def snapshot(conn: sa.Connection, exchange: str, var: str, *, payload: bool = True) -> SnapshotRow | None:
    """The stored snapshot (``payload=False``: all but the payload, for the status line)."""
    stmt = _SNAPSHOT if payload else _META
    for row in stmt.rows(conn, {"exchange": exchange, "var": var}):
        return SnapshotRow(*row)
    return None


@operation
def save_snapshot(conn: sa.Connection, exchange: str, var: str, built_at: datetime, payload: str,
                  summary: dict[str, Any], error: tuple[str, str] | None, clear_error: bool) -> None:
    """Replace the snapshot whole (one statement: readers see the old one or the new one).
    ``error``: (kind, message) to record; ``clear_error``: forget the last error."""
    values: dict[str, Any] = {"exchange": exchange, "var": var, "built_at": built_at,
                              "payload": payload, "summary": summary}
    update = ["built_at", "payload", "summary"]
    if error is not None:
        values |= {"last_error_kind": error[0], "last_error": error[1], "last_error_at": built_at}
        update += ["last_error", "last_error_kind", "last_error_at"]
    elif clear_error:
        values |= {"last_error_kind": None, "last_error": None, "last_error_at": None}
        update += ["last_error", "last_error_kind", "last_error_at"]
    _upsert(conn, SNAPSHOT, [values], ["exchange", "var"], update)


@operation
def record_failure(conn: sa.Connection, exchange: str, var: str, kind: str, message: str,
                   at: datetime) -> None:
    """A failed build: the snapshot stays as it is; the error is kept beside it."""
    _upsert(conn, SNAPSHOT, [{"exchange": exchange, "var": var, "last_error": message[:2000],
                              "last_error_kind": kind, "last_error_at": at}],
            ["exchange", "var"], ["last_error", "last_error_kind", "last_error_at"])


_UNFINISHED_BY_KEY = Prepared(sa.select(*_COLUMNS).where(
    JOB.c.dedupe_key == sa.bindparam("key"), _status_in([s.value for s in UNFINISHED_STATUSES])))


@reads
def unfinished_job(conn: sa.Connection, dedupe_key: str) -> Job | None:
    """The build holding ``dedupe_key`` now, if any."""
    for row in _UNFINISHED_BY_KEY.rows(conn, {"key": dedupe_key}):
        return Job(*row)
    return None


@shared_reads
def snapshot_and_build(conn: sa.Connection, exchange: str, var: str, dedupe_key: str,
                       *, payload: bool = True) -> tuple[SnapshotRow | None, Job | None]:
    """The snapshot and the build under way, in one hand-off (the request path's one read)."""
    return (snapshot.sync(conn, exchange, var, payload=payload),  # type: ignore[attr-defined]
            unfinished_job.sync(conn, dedupe_key))  # type: ignore[attr-defined]
