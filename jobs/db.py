"""The database: one hand-off per store operation, never a blocking call on the event loop.

A store operation is a plain function of a SQLAlchemy ``Connection`` (decorated with
``@operation``); it runs inside one transaction, committed when it returns, rolled back when
it raises. Awaiting it costs one hand-off, whatever the number of statements in it:

- SQLite (the default): a sync engine whose one connection lives on the process's own
  database thread. SQLite has one writer at a time anyway; one connection per process makes
  the process's statements queue in order instead of sleeping in SQLite's busy handler.
  (aiosqlite hands every DB-API call to its thread and back: ~16 hand-offs for one job.)
- PostgreSQL: asyncpg through SQLAlchemy's async engine; the function runs in a greenlet
  (``AsyncConnection.run_sync``) that awaits the network without any thread.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

P = ParamSpec("P")
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def today_utc() -> date:
    """Today's date in UTC: the one "today" every domain uses."""
    return utcnow().date()


def as_utc(value: datetime | None) -> datetime | None:
    """A naive timestamp from outside is taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Stores timezone-aware UTC; always gives back timezone-aware UTC (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        value = as_utc(value)
        if value is not None and dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return as_utc(value)

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Any:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        # SQLite hands back the text we stored (UTC, ISO 8601): one C call per value instead of
        # the generic parser and a second pass (a page of jobs holds a hundred of these)
        def process(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)
        return process


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def normalize_url(url: str) -> str:
    """The URL with the driver we use: pysqlite for SQLite, asyncpg for PostgreSQL.

    Older settings name ``sqlite+aiosqlite``; tools name ``postgresql://`` or ``postgres://``
    or another driver: all of them mean the same database.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r} (e.g. sqlite:///path/marketdesk.db or "
                         "postgresql+asyncpg://user@host/db)")
    backend = scheme.split("+", 1)[0]
    if backend == "sqlite":
        return f"sqlite://{rest}"
    if backend in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database {backend!r} in {url!r}: use sqlite or postgresql")


@dataclass(slots=True)
class _Call:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    loop: asyncio.AbstractEventLoop | None  # None: a blocking caller, waiting on ``done``
    future: Any  # an asyncio.Future, or for a blocking caller a callback(result, error)


class _SQLiteThread:
    """The thread a process's one SQLite connection lives on.

    Operations run together in one transaction (group commit): those an event loop asks for
    in one pass of its callbacks are handed over at the end of the pass, in one wake-up of
    this thread, and those queued while it is busy join them. One COMMIT and one wake-up of
    the loop for all of them, so ten jobs claimed at once cost little more than one. Results
    are handed back only after the commit. If the batch fails, it is rolled back and each of
    its operations run again alone, so a failure (a constraint, a bug) stays with the
    operation that caused it.
    """

    MAX_BATCH = 64
    # group commit under load, as PostgreSQL's commit_delay does: when the last batch held
    # several operations and ended a moment ago, others are on their way; waiting this long
    # for them costs less than a commit of their own (one transaction per batch). A lone
    # caller never waits.
    GATHER_SECONDS = 0.0005
    BUSY_WITHIN_SECONDS = 0.002

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._conn: sa.Connection | None = None
        self._calls: queue.SimpleQueue[list[_Call] | None] = queue.SimpleQueue()
        self._pending: list[_Call] = []  # asked for in this pass of the loop, not handed over yet
        self._thread = threading.Thread(target=self._serve, name="sqlite", daemon=True)
        self._thread.start()

    # -- on the database thread -----------------------------------------------------------------
    def _connection(self) -> sa.Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                conn.close()
            conn = self._conn = self.engine.connect()
        return conn

    def _serve(self) -> None:
        stopping = False
        last_size, last_end = 0, 0.0
        while not stopping:
            first = self._calls.get()
            if first is None:
                break
            if last_size > 1 and time.monotonic() - last_end < self.BUSY_WITHIN_SECONDS:
                time.sleep(self.GATHER_SECONDS)
            batch = first
            while len(batch) < self.MAX_BATCH:
                try:
                    more = self._calls.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.extend(more)
            self._deliver(batch, self._run(batch))
            last_size, last_end = len(batch), time.monotonic()
        if self._conn is not None:
            self._conn.close()
        self.engine.dispose()

    def _run(self, batch: list[_Call]) -> list[tuple[Any, BaseException | None]]:
        conn = self._connection()
        if len(batch) > 1:
            try:
                with conn.begin():
                    return [(c.fn(conn, *c.args, **c.kwargs), None) for c in batch]
            except Exception:  # rolled back: find the culprit below
                pass
        outcomes: list[tuple[Any, BaseException | None]] = []
        for c in batch:
            try:
                with conn.begin():
                    outcomes.append((c.fn(conn, *c.args, **c.kwargs), None))
            except Exception as exc:  # handed to whoever waits for it
                outcomes.append((None, exc))
        return outcomes

    @staticmethod
    def _deliver(batch: list[_Call], outcomes: list[tuple[Any, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
        for call, (result, error) in zip(batch, outcomes, strict=True):
            if call.loop is None:
                call.future(result, error)
            else:
                by_loop.setdefault(call.loop, []).append((call.future, result, error))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, settled)
            except RuntimeError:  # that loop is closed: nobody waits any more
                pass

    # -- from other threads ---------------------------------------------------------------------
    def call(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
             ) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._hand_over)
        self._pending.append(_Call(fn, args, kwargs, loop, future))
        return future

    def _hand_over(self) -> None:
        batch, self._pending = self._pending, []
        self._calls.put(batch)

    def call_blocking(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """For callers without an event loop (migrations, clean-up)."""
        done = threading.Event()
        box: list[Any] = []

        def settle(result: Any, error: BaseException | None) -> None:
            box[:] = [result, error]
            done.set()

        self._calls.put([_Call(fn, args, kwargs, None, settle)])
        done.wait()
        if box[1] is not None:
            raise box[1]
        return box[0]  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Finish what is queued, close the connection, end the thread."""
        self._calls.put(None)
        self._thread.join(timeout=30)


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in settled:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _sqlite_engine(url: str) -> sa.Engine:
    """One connection, on the database thread; WAL so readers never wait for the writer."""
    engine = sa.create_engine(url, pool_size=1, max_overflow=0,
                              connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


class Database:
    """The process's database: ``await db.run(fn, ...)`` runs ``fn(connection, ...)`` in a
    transaction. One per process (and per event loop)."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalize_url(url)
        self._sqlite: _SQLiteThread | None = None
        if is_sqlite(self.url):
            self.engine = _sqlite_engine(self.url)
            self._async = None
        else:
            engine_kwargs.setdefault("pool_size", 10)
            engine_kwargs.setdefault("max_overflow", 20)
            self._async = create_async_engine(self.url, pool_pre_ping=True, **engine_kwargs)
            self.engine = self._async.sync_engine

    def _thread(self) -> _SQLiteThread:
        """SQLite's database thread, started on first use (and again after dispose)."""
        if self._sqlite is None:
            self._sqlite = _SQLiteThread(self.engine)
        return self._sqlite

    async def run(self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args,
                  **kwargs: P.kwargs) -> T:
        if self._async is None:
            return await self._thread().call(fn, args, kwargs)
        async with self._async.begin() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    def run_blocking(self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args,
                     **kwargs: P.kwargs) -> T:
        """The same from code without a running event loop (migrations)."""
        if self._async is None:
            return self._thread().call_blocking(fn, args, kwargs)

        async def once() -> T:
            try:
                return await self.run(fn, *args, **kwargs)
            finally:
                await self.dispose()
        return asyncio.run(once())

    async def ping(self) -> None:
        await self.run(lambda conn: conn.execute(sa.text("SELECT 1")))

    def dispose_blocking(self) -> None:
        """``dispose`` for code without a running event loop."""
        if self._sqlite is not None:
            thread, self._sqlite = self._sqlite, None
            thread.stop()
        else:
            self.engine.dispose()

    async def dispose(self) -> None:
        if self._sqlite is not None:
            thread, self._sqlite = self._sqlite, None
            await asyncio.to_thread(thread.stop)
        elif self._async is not None:
            await self._async.dispose()


_REQUIRED = object()


class Prepared:
    """A statement built once and run many times by the store's hot operations.

    On SQLite it is compiled once and run on the driver's own cursor, its parameters and
    rows converted by the same SQLAlchemy type processors SQLAlchemy would use: the per-call
    work of a SQLAlchemy execution (execution context, parameter and result objects) costs
    two to three times what SQLite takes to run these statements, on the one thread every
    write of the process goes through. Elsewhere (PostgreSQL over asyncpg) it runs through
    SQLAlchemy as usual. A statement SQLite cannot take this way (one with an expanding IN)
    runs through SQLAlchemy too.
    """

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._sqlite: tuple[str, list[tuple[str, Any, Any]], list[tuple[int, Any]]] | None = None
        self._compiled_for: sa.Dialect | None = None

    def _compile(self, dialect: sa.Dialect
                 ) -> tuple[str, list[tuple[str, Any, Any]], list[tuple[int, Any]]] | None:
        if self._compiled_for is not dialect:
            compiled = self.stmt.compile(dialect=dialect)
            if compiled.post_compile_params or compiled.literal_execute_params:
                self._sqlite = None
            else:
                binds = [(name, _REQUIRED if compiled.binds[name].required
                          else compiled.binds[name].effective_value,
                          compiled.binds[name].type.bind_processor(dialect))
                         for name in compiled.positiontup or ()]
                results = [(i, process) for i, c in enumerate(self.stmt.exported_columns)
                           if (process := c.type.result_processor(dialect, None)) is not None]
                self._sqlite = (str(compiled), binds, results)
            self._compiled_for = dialect
        return self._sqlite

    def _cursor(self, conn: sa.Connection, params: dict[str, Any]) -> Any:
        prepared = self._compile(conn.dialect) if conn.dialect.name == "sqlite" else None
        if prepared is None:
            return None
        sql, binds, _ = prepared
        args = []
        for name, default, process in binds:
            value = params.get(name, default)
            if value is _REQUIRED:
                raise sa.exc.InvalidRequestError(f"A value is required for bind parameter {name!r}")
            args.append(process(value) if process is not None and value is not None else value)
        return conn.connection.driver_connection.execute(sql, args)  # type: ignore[union-attr]

    def rows(self, conn: sa.Connection, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows it returns (RETURNING or SELECT), each value converted to its Python type."""
        params = params or {}
        cursor = self._cursor(conn, params)
        if cursor is None:
            return [tuple(row) for row in conn.execute(self.stmt, params)]
        processors = self._sqlite[2]  # type: ignore[index]
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        if not processors:
            return rows  # type: ignore[no-any-return]
        out = []
        for row in rows:
            values = list(row)
            for i, process in processors:
                if values[i] is not None:
                    values[i] = process(values[i])
            out.append(tuple(values))
        return out

    def rowcount(self, conn: sa.Connection, params: dict[str, Any] | None = None) -> int:
        """How many rows it changed (an INSERT, UPDATE or DELETE without RETURNING)."""
        params = params or {}
        cursor = self._cursor(conn, params)
        if cursor is None:
            return int(conn.execute(self.stmt, params).rowcount or 0)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()


def operation(fn: Callable[Concatenate[sa.Connection, P], T]
              ) -> Callable[Concatenate[Database, P], Awaitable[T]]:
    """``fn(conn, ...)`` becomes ``await fn(db, ...)``: one transaction, one hand-off.
    The plain function stays reachable as ``.sync``, to compose inside another operation."""

    @functools.wraps(fn)
    async def run(db: Database, *args: P.args, **kwargs: P.kwargs) -> T:
        return await db.run(fn, *args, **kwargs)

    run.sync = fn  # type: ignore[attr-defined]
    return run


@operation
def dated_series(conn: sa.Connection, key: Any, day: Any, value: Any, keys: list[str],
                 start: Any, end: Any) -> dict[str, list[tuple[Any, float]]]:
    """``{key: [(day, value), ...]}`` oldest first, for each of ``keys`` (empty when none),
    from three columns of one table over days in [start, end]."""
    out: dict[str, list[tuple[Any, float]]] = {k: [] for k in keys}
    if not keys:
        return out
    stmt = (sa.select(key, day, value).where(key.in_(keys), day >= start, day <= end)
            .order_by(key, day))
    for k, d, v in conn.execute(stmt):
        out[k].append((d, float(v)))
    return out
