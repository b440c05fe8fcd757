"""The database: one hand-off per store operation, never a blocking call on the event loop.

A store operation is a plain function of a SQLAlchemy ``Connection``, decorated with
``@operation`` (it may write) or ``@reads`` (it only reads); it runs inside one transaction,
committed when it returns, rolled back when it raises. Awaiting it costs one hand-off,
whatever the number of statements in it:

- SQLite (the default): writes on the process's one writer thread and connection, in order;
  reads on a few reader threads with connections of their own (WAL: readers never wait for
  the writer), so no read holds the write lock or shares a transaction with a write. Each
  thread keeps its connection (a pool checkout and reset cost more than these transactions).
  Writes asked for while the writer is busy go over together and commit together (group
  commit): one hand-off and one take of the write lock for all of them.
  (aiosqlite hands every DB-API call to its thread and back: ~16 hand-offs for one job.)
- PostgreSQL: asyncpg through SQLAlchemy's async engine; the function runs in a greenlet
  (``AsyncConnection.run_sync``) that awaits the network without any thread.

A read that many requests make at once with the same arguments (``@shared_reads``) is shared
by those that come while one is on its way: they get the next one, begun after they asked.
"""

from __future__ import annotations

import asyncio
import functools
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
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


class _SQLite:
    """SQLite in WAL mode: one writer at a time, readers beside it that never wait for it.

    Writes run on one thread with one connection, in order, each in its own short
    ``BEGIN IMMEDIATE`` transaction (it takes the write lock at once: a deferred one that read
    first could not upgrade if another process wrote meanwhile). Reads run on a few threads,
    each with its own read-only connection and its own snapshot, so a heavy read never holds
    the write lock, never shares a transaction with a write, and never delays another
    request's read on a busy page.
    """

    def __init__(self, url: str, readers: int) -> None:
        self.writer = _Pinned(_sqlite_engine(url, pool_size=1, write=True))
        self.reader = _Pinned(_sqlite_engine(url, pool_size=readers, write=False))
        self.writes = ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
        self.reads = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-read")
        # each event loop's writes wait in a queue of their own, all for the one writer thread
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _WriteQueue] = (
            weakref.WeakKeyDictionary())

    def write(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
              ) -> asyncio.Future[T]:
        """``fn(conn, *args, **kwargs)`` on the writer thread; its outcome, once committed."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _WriteQueue(self, loop)
        return queue.add(fn, args, kwargs)

    async def drain(self) -> None:
        """Wait until this loop's writes, those on their way and those queued, are done."""
        queue = self._queues.get(asyncio.get_running_loop())
        if queue is not None:
            await queue.idle.wait()

    def stop(self) -> None:
        self.writes.shutdown(wait=True)
        self.reads.shutdown(wait=True)
        self.writer.close()
        self.reader.close()


_Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]  # fn(conn, *args, **kwargs)
_Write = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]  # + its answer


class _WriteQueue:
    """One event loop's writes for the SQLite writer thread, with group commit: writes asked
    for in one pass of the loop, or while the writer is busy with earlier ones, go over in one
    hand-off and run in one transaction. A batch that fails is rolled back and its writes run
    again one by one, so an error stays with the write that raised it."""

    # the most writes one transaction takes: a batch holds the write lock that long, and the
    # worker's heartbeats and claims (another process) wait for it
    MAX_BATCH = 64

    def __init__(self, lite: _SQLite, loop: asyncio.AbstractEventLoop) -> None:
        self.lite, self.loop = lite, loop
        self.queued: list[_Write] = []
        self.in_flight: list[_Write] = []
        self.scheduled = False
        self.idle = asyncio.Event()  # nothing queued, nothing on its way
        self.idle.set()

    def add(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
            ) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self.loop.create_future()
        self.queued.append((fn, args, kwargs, future))
        self.idle.clear()
        if not self.in_flight and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._hand_over)
        return future

    def _hand_over(self) -> None:
        self.scheduled = False
        while self.queued and not self.in_flight:
            # a caller that gave up before its write went over takes it back, as with an executor
            batch = [call for call in self.queued[:self.MAX_BATCH] if not call[3].done()]
            del self.queued[:self.MAX_BATCH]
            if not batch:
                continue
            try:
                done = self.loop.run_in_executor(self.lite.writes, _write_batch, self.lite.writer,
                                                 [call[:3] for call in batch])
            except RuntimeError as exc:  # the writer thread was shut down (the database closed)
                for call in batch + self.queued:
                    _settle(call[3], None, exc)
                self.queued.clear()
                break
            self.in_flight = batch
            done.add_done_callback(self._written)
        if not self.queued and not self.in_flight:
            self.idle.set()

    def _written(self, outcome: asyncio.Future[list[tuple[Any, BaseException | None]]]) -> None:
        batch, self.in_flight = self.in_flight, []
        try:
            if outcome.cancelled() or outcome.exception() is not None:  # the executor shut down
                error = (outcome.exception() if not outcome.cancelled()
                         else RuntimeError("the database is closing"))
                results: list[tuple[Any, BaseException | None]] = [(None, error)] * len(batch)
            else:
                results = outcome.result()
            for call, (result, error) in zip(batch, results, strict=True):
                _settle(call[3], result, error)
        finally:  # whatever happened above, the writes queued behind go over
            self._hand_over()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
        return
    try:
        future.set_exception(error)
    except TypeError:  # StopIteration cannot travel through a future
        future.set_exception(RuntimeError(f"a database write raised {error!r}"))


class _Pinned:
    """Each thread's own connection of ``engine``, kept while the thread lives: a pool
    checkout and its reset on return cost more than the short transactions run here."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._made: list[sa.Connection] = []
        self._lock = threading.Lock()

    def connection(self) -> sa.Connection:
        conn: sa.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._local.conn = self.engine.connect()
            with self._lock:
                self._made.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for conn in made:
            conn.close()
        self.engine.dispose()


def _in_pinned(pinned: _Pinned, fn: Callable[..., T], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> T:
    conn = pinned.connection()
    with conn.begin():
        return fn(conn, *args, **kwargs)


def _write_batch(pinned: _Pinned, calls: list[_Call]) -> list[tuple[Any, BaseException | None]]:
    """Run ``calls`` in one transaction; if any raises (or the commit fails), roll back and
    run each in its own, so each gets its own outcome."""
    conn = pinned.connection()
    if len(calls) > 1:
        try:
            with conn.begin():
                return [(fn(conn, *args, **kwargs), None) for fn, args, kwargs in calls]
        except Exception:  # rolled back: run them one by one below to find which one raised
            pass
    outcomes: list[tuple[Any, BaseException | None]] = []
    for fn, args, kwargs in calls:
        try:
            outcomes.append((_in_pinned(pinned, fn, args, kwargs), None))
        except Exception as exc:  # handed to the write's caller
            outcomes.append((None, exc))
    return outcomes


def _sqlite_engine(url: str, *, pool_size: int, write: bool) -> sa.Engine:
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=0,
                              connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun below, not by the driver
        cur = dbapi_conn.cursor()
        if write:
            cur.execute("PRAGMA journal_mode=WAL")
        else:
            cur.execute("PRAGMA query_only=1")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        if write:
            _begin_immediate(conn.connection.driver_connection)
        else:
            conn.connection.driver_connection.execute("BEGIN")

    return engine


BUSY_TIMEOUT_S = 30.0


def _begin_immediate(dbapi: Any) -> None:
    """Take SQLite's write lock for a transaction, waiting up to BUSY_TIMEOUT_S for another
    process's writer (the worker, another web process) to let go of it.

    The wait is ours, not SQLite's busy handler: that one sleeps 1, 2, 5, 10, ... then 100 ms
    between tries, so under steady contention a waiter keeps losing the lock to writers that
    arrive between its sleeps (two web processes posting jobs saw a submit wait over 2 s).
    Short randomized sleeps (0.1–2 ms) retry about as soon as a transaction of ours ends. Every
    other statement keeps SQLite's own timeout."""
    try:
        dbapi.execute("PRAGMA busy_timeout=0")
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        pause = 0.0001
        while True:
            try:
                dbapi.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(random.uniform(pause / 2, pause))
            pause = min(pause * 2, 0.002)
    finally:
        dbapi.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")


class Database:
    """The process's database: ``await db.run(fn, ...)`` runs ``fn(connection, ...)`` in a
    transaction that may write; ``await db.read(fn, ...)`` in one that only reads. One per
    process (and per event loop)."""

    READERS = 4

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = normalize_url(url)
        self._sqlite: _SQLite | None = None
        if is_sqlite(self.url):
            self._async = None
            self.engine = _sqlite_engine(self.url, pool_size=1, write=True)  # for run_blocking
        else:
            engine_kwargs.setdefault("pool_size", 10)
            engine_kwargs.setdefault("max_overflow", 20)
            self._async = create_async_engine(self.url, pool_pre_ping=True, **engine_kwargs)
            self.engine = self._async.sync_engine

        self._sharing: dict[tuple[Any, ...], _Sharing] = {}

    def _lite(self) -> _SQLite:
        """SQLite's threads and connections, made on first use (and again after dispose)."""
        if self._sqlite is None:
            self._sqlite = _SQLite(self.url, self.READERS)
        return self._sqlite

    async def run(self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args,
                  **kwargs: P.kwargs) -> T:
        if self._async is None:
            return await self._lite().write(fn, args, kwargs)
        async with self._async.begin() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    async def read(self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args,
                   **kwargs: P.kwargs) -> T:
        """``run`` for an operation that only reads: on SQLite, beside the writer."""
        if self._async is None:
            lite = self._lite()
            return await asyncio.get_running_loop().run_in_executor(
                lite.reads, _in_pinned, lite.reader, fn, args, kwargs)
        async with self._async.connect() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    async def read_shared(self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args,
                          **kwargs: P.kwargs) -> T:
        """``read`` for one that many requests make at once with the same arguments: a caller
        that comes while such a read is on its way waits for the next one, which starts when
        that one ends and answers every caller that came meanwhile. Each caller still gets a
        snapshot taken after it asked (never an answer older than its call), and fifty
        requests at once cost two hand-offs, not fifty."""
        key = (fn, args, tuple(sorted(kwargs.items())))
        sharing = self._sharing.get(key)
        if sharing is None:
            sharing = self._sharing[key] = _Sharing()
            return await asyncio.shield(self._start_shared(key, sharing, None))
        if sharing.following is None:
            sharing.following = asyncio.get_running_loop().create_future()
        return await asyncio.shield(sharing.following)

    def _start_shared(self, key: tuple[Any, ...], sharing: _Sharing,
                      into: asyncio.Future[Any] | None) -> asyncio.Future[Any]:
        fn, args, kwargs = key
        task = asyncio.ensure_future(self.read(fn, *args, **dict(kwargs)))

        def done(task: asyncio.Future[Any]) -> None:
            if into is not None:
                _copy_outcome(task, into)
            elif not task.cancelled():
                task.exception()  # its caller may be gone: the outcome is not lost unseen
            following, sharing.following = sharing.following, None
            if following is not None:
                self._start_shared(key, sharing, following)
            else:
                del self._sharing[key]
        task.add_done_callback(done)
        return task

    def run_blocking(self, fn: Callable[Concatenate[sa.Connection, P], T], *args: P.args,
                     **kwargs: P.kwargs) -> T:
        """The same from code without a running event loop (migrations)."""
        if self._async is None:
            with self.engine.begin() as conn:
                return fn(conn, *args, **kwargs)

        async def once() -> T:
            try:
                return await self.run(fn, *args, **kwargs)
            finally:
                await self.dispose()
        return asyncio.run(once())

    async def ping(self) -> None:
        await self.read(lambda conn: conn.execute(sa.text("SELECT 1")))

    def dispose_blocking(self) -> None:
        """``dispose`` for code without a running event loop."""
        if self._sqlite is not None:
            lite, self._sqlite = self._sqlite, None
            lite.stop()
        self.engine.dispose()

    async def dispose(self) -> None:
        if self._sqlite is not None:
            lite, self._sqlite = self._sqlite, None
            await lite.drain()  # writes asked for before are written, as an executor's would be
            await asyncio.to_thread(lite.stop)
        if self._async is not None:
            await self._async.dispose()
        else:
            self.engine.dispose()


class _Sharing:
    """The callers of one shared read (``Database.read_shared``) that wait for the next."""

    __slots__ = ("following",)

    def __init__(self) -> None:
        self.following: asyncio.Future[Any] | None = None


def _copy_outcome(source: asyncio.Future[Any], into: asyncio.Future[Any]) -> None:
    if into.done():
        return
    if source.cancelled():
        into.cancel()
    elif (exc := source.exception()) is not None:
        into.set_exception(exc)
    else:
        into.set_result(source.result())


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
                          compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                         for name in compiled.positiontup or ()]
                results = [(i, process) for i, c in enumerate(self.stmt.exported_columns)
                           # the dialect's own type: a generic Date has no processor, SQLite's does
                           if (process := c.type.dialect_impl(dialect).result_processor(dialect, None))
                           is not None]
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


def _awaitable(fn: Callable[Concatenate[sa.Connection, P], T], how: Callable[..., Awaitable[T]]
               ) -> Callable[Concatenate[Database, P], Awaitable[T]]:
    @functools.wraps(fn)
    async def run(db: Database, *args: P.args, **kwargs: P.kwargs) -> T:
        return await how(db, fn, *args, **kwargs)

    run.sync = fn  # type: ignore[attr-defined]
    return run


def operation(fn: Callable[Concatenate[sa.Connection, P], T]
              ) -> Callable[Concatenate[Database, P], Awaitable[T]]:
    """``fn(conn, ...)`` becomes ``await fn(db, ...)``: one transaction, one hand-off.
    The plain function stays reachable as ``.sync``, to compose inside another operation."""
    return _awaitable(fn, Database.run)


def reads(fn: Callable[Concatenate[sa.Connection, P], T]
          ) -> Callable[Concatenate[Database, P], Awaitable[T]]:
    """``operation`` for one that only reads: it never takes the write lock, never waits
    behind a write of this process, and a slow one delays no other request."""
    return _awaitable(fn, Database.read)


def shared_reads(fn: Callable[Concatenate[sa.Connection, P], T]
                 ) -> Callable[Concatenate[Database, P], Awaitable[T]]:
    """``reads`` for a read the busiest requests make, with hashable arguments: callers at the
    same time share it (``Database.read_shared``)."""
    return _awaitable(fn, Database.read_shared)


@reads
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
