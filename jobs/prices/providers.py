"""Daily price providers: an offline synthetic one and Alpha Vantage.

Every provider answers ``fetch_daily(symbol, start, end)`` with the bars whose day lies in
``[start, end]`` and raises one of three exceptions:

* :class:`ProviderError` - this symbol failed (bad symbol, unexpected answer); go on with the next.
* :class:`ProviderUnavailable` - a :class:`ProviderError` for an outage that survived retries.
* :class:`RateLimited` - the provider refuses further calls for now; stop downloading.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, runtime_checkable

import httpx
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from jobs.db import today_utc
from jobs.prices.calendar import trading_days
from jobs.prices.settings import PricesSettings

__all__ = [
    "PROVIDER_NAMES",
    "SYMBOL_RE",
    "AlphaVantageProvider",
    "Bar",
    "FetchResult",
    "PriceProvider",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimited",
    "SyntheticProvider",
    "make_provider",
    "reset_synthetic_rate_limit",
]

#: A well-formed ticker: 1-10 characters, uppercase letters and digits, with single '.' or '-'
#: separators after the first character and never at the end (``BRK.B``, ``BF-B``).
#: Anchored with ``\A``/``\Z`` so ``match``, ``fullmatch`` and ``search`` all check the whole text.
PACE_KEY_PREFIX = "marketdesk:pace:"
SYMBOL_RE: re.Pattern[str] = re.compile(r"\A(?=.{1,10}\Z)[A-Z0-9](?:[.-]?[A-Z0-9])*\Z")

PROVIDER_NAMES: tuple[str, ...] = ("synthetic", "alphavantage")


@dataclass(frozen=True)
class Bar:
    symbol: str
    day: date
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass
class FetchResult:
    bars: list[Bar]  # only bars with start <= day <= end, oldest first
    warnings: list[str] = field(default_factory=list)


class ProviderError(Exception):
    """This symbol failed; ``str(exc)`` is a message fit for the user."""


class RateLimited(Exception):
    """The provider refuses further calls now; ``str(exc)`` is the provider's message."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached (5xx or connection errors persisted after retries)."""


@runtime_checkable
class PriceProvider(Protocol):
    name: str

    async def fetch_daily(self, symbol: str, start: date, end: date) -> FetchResult: ...

    async def aclose(self) -> None: ...


def make_provider(name: str, settings: PricesSettings, redis: Any = None) -> PriceProvider:
    """The provider called ``name`` (one of :data:`PROVIDER_NAMES`). Given the deployment's
    Redis, Alpha Vantage's pacing holds across every job and worker using the same key."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "synthetic":
        return SyntheticProvider(settings)
    if key == "alphavantage":
        api_key = (settings.alphavantage_api_key or "").strip()
        pace = (SharedPace(redis, "alphavantage:" + api_key, settings.alphavantage_min_interval_seconds)
                if redis is not None and api_key else None)
        return AlphaVantageProvider(settings, pace=pace)
    raise ValueError(f"Unknown price provider {name!r}; choose one of: {', '.join(PROVIDER_NAMES)}")


# --------------------------------------------------------------------------------------------
# Synthetic provider
# --------------------------------------------------------------------------------------------

# Log closes follow a mean-reverting random walk over weekdays (Mon-Fri) counted from _EPOCH.
# The walk is built in two layers so any bar is cheap to compute and depends only on
# (symbol, day), never on the requested range or the holiday calendar:
#   * anchors: the log close before each block of _BLOCK weekdays, a coarse walk that runs
#     forwards and backwards from _EPOCH (a few steps per year, cached per symbol);
#   * blocks: the daily path between two anchors, a random walk bridged onto the next anchor,
#     seeded by (symbol, block number) and cached as finished bars.
_EPOCH = date(2000, 1, 3)  # a Monday
_BLOCK = 64
_BLOCK_REVERSION = 0.06  # pull of each anchor step back towards the symbol's price level
_SYMBOL_CACHE_SIZE = 1024
_BLOCK_CACHE_SIZE = 1024

_BarValues = tuple[float, float, float, float, int]  # open, high, low, close, volume


def _seed(*parts: object) -> int:
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _weekday_index(day: date) -> int:
    weeks, rem = divmod((day - _EPOCH).days, 7)
    return weeks * 5 + min(rem, 4)  # Saturday and Sunday share Friday's index


class _Anchors:
    """Per-symbol parameters and the coarse anchor walk, extended on demand."""

    def __init__(self, symbol: str) -> None:
        rng = random.Random(_seed("synthetic-params", symbol))
        self.level = rng.uniform(math.log(8.0), math.log(600.0))  # log price level
        self.sigma = rng.uniform(0.01, 0.02)  # daily return stdev
        self.drift = rng.uniform(-0.0001, 0.0004)  # daily log drift
        self.volume = 10 ** rng.uniform(5.0, 7.5)  # typical daily volume
        self._forward_rng = random.Random(_seed("synthetic-forward", symbol))
        self._backward_rng = random.Random(_seed("synthetic-backward", symbol))
        self._forward = [self.level + rng.gauss(0.0, 0.25)]  # anchor k for k >= 0
        self._backward: list[float] = []  # anchor -(i + 1) at position i

    def _step(self, x: float, rng: random.Random, sign: float) -> float:
        pull = _BLOCK_REVERSION * (self.level - x)
        noise = self.sigma * math.sqrt(_BLOCK) * rng.gauss(0.0, 1.0)
        return x + pull + sign * self.drift * _BLOCK + noise

    def anchor(self, k: int) -> float:
        """The log close just before block ``k`` starts."""
        if k >= 0:
            values = self._forward
            while len(values) <= k:
                values.append(self._step(values[-1], self._forward_rng, 1.0))
            return values[k]
        values = self._backward
        while len(values) < -k:
            prev = values[-1] if values else self._forward[0]
            values.append(self._step(prev, self._backward_rng, -1.0))
        return values[-k - 1]


def _block_bars(symbol: str, anchors: _Anchors, k: int) -> list[_BarValues]:
    rng = random.Random(_seed("synthetic-block", symbol, k))
    sigma = anchors.sigma
    first, last = anchors.anchor(k), anchors.anchor(k + 1)
    steps = [rng.gauss(anchors.drift, sigma) for _ in range(_BLOCK)]
    correction = (last - first - sum(steps)) / _BLOCK  # bridge the walk onto the next anchor
    bars: list[_BarValues] = []
    prev_close = math.exp(first)
    x = first
    for step in steps:
        x += step + correction
        close = math.exp(x)
        open_ = prev_close * math.exp(rng.gauss(0.0, 0.3 * sigma))
        high = max(open_, close) * math.exp(abs(rng.gauss(0.0, 0.5 * sigma)))
        low = min(open_, close) * math.exp(-abs(rng.gauss(0.0, 0.5 * sigma)))
        move = abs(step + correction)
        volume = anchors.volume * math.exp(rng.gauss(0.0, 0.3)) * (1.0 + 10.0 * move)
        o, c = round(open_, 2), round(close, 2)
        bars.append(
            (o, max(round(high, 2), o, c), min(round(low, 2), o, c), c, max(1, int(volume)))
        )
        prev_close = close
    return bars


_anchors_cache: OrderedDict[str, _Anchors] = OrderedDict()
_block_cache: OrderedDict[tuple[str, int], list[_BarValues]] = OrderedDict()
_synthetic_lock = threading.Lock()  # never held across an await


def _cached(cache: OrderedDict[Any, Any], key: Any, size: int, build: Any) -> Any:
    value = cache.get(key)
    if value is None:
        value = cache[key] = build()
        if len(cache) > size:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return value


def synthetic_bar(symbol: str, day: date) -> Bar:
    """The synthetic bar of ``symbol`` on ``day`` (defined for any weekday)."""
    k, j = divmod(_weekday_index(day), _BLOCK)
    with _synthetic_lock:
        anchors = _cached(_anchors_cache, symbol, _SYMBOL_CACHE_SIZE, lambda: _Anchors(symbol))
        block = _cached(
            _block_cache, (symbol, k), _BLOCK_CACHE_SIZE, lambda: _block_bars(symbol, anchors, k)
        )
    o, h, lo, c, v = block[j]
    return Bar(symbol=symbol, day=day, open=o, high=h, low=lo, close=c, volume=v)


# Sliding 60-second window of accepted synthetic requests, shared by every instance in the
# process. The check-and-record never awaits, so it is atomic for asyncio tasks; the threading
# lock also makes it safe across event loops in different threads.
_RATE_WINDOW_SECONDS = 60.0
_rate_window: deque[float] = deque()
_rate_lock = threading.Lock()


def reset_synthetic_rate_limit() -> None:
    """Forget every recorded synthetic request (for tests)."""
    with _rate_lock:
        _rate_window.clear()


def _take_synthetic_slot(limit: int | None) -> None:
    if limit is None:
        return
    now = time.monotonic()
    with _rate_lock:
        while _rate_window and now - _rate_window[0] >= _RATE_WINDOW_SECONDS:
            _rate_window.popleft()
        if len(_rate_window) >= limit:
            raise RateLimited(
                f"Synthetic provider rate limit of {limit} requests per minute reached"
            )
        _rate_window.append(now)


class SyntheticProvider:
    """Deterministic offline bars for any well-formed ticker, on NYSE trading days up to today."""

    name = "synthetic"

    def __init__(self, settings: PricesSettings) -> None:
        self._latency = settings.synthetic_latency_ms / 1000
        self._limit = settings.synthetic_rate_limit_per_min

    async def fetch_daily(self, symbol: str, start: date, end: date) -> FetchResult:
        if not isinstance(symbol, str) or not SYMBOL_RE.match(symbol):
            raise ProviderError(f"Unknown symbol {symbol!r}")
        _take_synthetic_slot(self._limit)
        if self._latency > 0:
            await asyncio.sleep(self._latency)
        last = min(end, today_utc())
        bars = [synthetic_bar(symbol, day) for day in trading_days(start, last)]
        return FetchResult(bars=bars)

    async def aclose(self) -> None:
        return None


# --------------------------------------------------------------------------------------------
# Alpha Vantage provider
# --------------------------------------------------------------------------------------------

_COMPACT_DAYS = 100
# Ask compact when start is this many trading days back or fewer (margin for today's bar not
# being published yet and for calendar differences).
_COMPACT_SAFE_DAYS = 95

_RATE_LIMIT_MARKERS = (
    "rate limit",
    "requests per day",
    "call frequency",
    "spreading out",
    "1 request per second",
)
_PREMIUM_MARKERS = ("premium feature", "outputsize=full")


class _Transient(Exception):
    """A failure worth retrying (5xx or transport error); ``str`` describes it."""


class _PremiumFull(Exception):
    """outputsize=full was refused as a premium feature."""


def _fallback_warning(symbol: str) -> str:
    return (
        "Alpha Vantage: outputsize=full is a premium feature; "
        f"fell back to compact (last {_COMPACT_DAYS} days) for {symbol}"
    )


class Pace(Protocol):
    def turn(self) -> AbstractAsyncContextManager[None]:
        """Wait for the turn to send one request; the request is sent inside the block."""
        ...


class LocalPace:
    """One request at a time from this provider, each sent no sooner than ``interval`` after
    the previous answer (Alpha Vantage counts requests as they *arrive*: spacing only their
    starts, as a token bucket does, lets a slow one arrive close behind the next)."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._lock = asyncio.Lock()
        self._last_answer = float("-inf")

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self._lock:
            wait = self._last_answer + self._interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                yield
            finally:
                self._last_answer = time.monotonic()


class SharedPace:
    """The same rule for every job and worker process sending with one API key: the provider
    limits the key, whoever sends. A Redis lock (redis-py's) makes requests take turns, and
    the time of the last answer (Redis's clock, one for every host) is kept beside it."""

    def __init__(self, redis: Any, name: str, interval: float, lock_seconds: float = 120.0) -> None:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]  # never the key itself
        self._redis = redis
        self._interval = interval
        self._last_key = f"{PACE_KEY_PREFIX}{digest}:last-answer"
        self._lock = redis.lock(f"{PACE_KEY_PREFIX}{digest}:lock", timeout=lock_seconds, sleep=0.02)

    async def _now(self) -> float:
        seconds, micros = await self._redis.time()
        return float(seconds) + float(micros) / 1e6

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self._lock:
            last = await self._redis.get(self._last_key)
            if last is not None:
                wait = float(last) + self._interval - await self._now()
                if wait > 0:
                    await asyncio.sleep(wait)
            try:
                yield
            finally:
                await self._redis.set(self._last_key, repr(await self._now()),
                                      px=max(60_000, int(self._interval * 10_000)))


class AlphaVantageProvider:
    """Alpha Vantage ``TIME_SERIES_DAILY`` over HTTP.

    One ``httpx.AsyncClient`` per instance (closed by :meth:`aclose`); requests - retries
    included - are paced to one per ``settings.alphavantage_min_interval_seconds`` (by its
    ``pace``: this instance alone, or every sender of the key with :class:`SharedPace`); 5xx answers
    and transport errors are retried ``retry_attempts`` times in all with exponential backoff
    starting at ``retry_wait_seconds``. After a premium refusal of ``outputsize=full`` the
    instance only asks for ``compact`` from then on.
    """

    name = "alphavantage"

    def __init__(
        self,
        settings: PricesSettings,
        *,
        retry_wait_seconds: float = 1.0,
        retry_attempts: int = 3,
        timeout_seconds: float = 30.0,
        pace: Pace | None = None,
    ) -> None:
        self._api_key = (settings.alphavantage_api_key or "").strip() or None
        self._url = settings.alphavantage_url
        self._pace = pace or LocalPace(settings.alphavantage_min_interval_seconds)
        self._retry_wait = retry_wait_seconds
        self._retry_attempts = max(1, retry_attempts)
        self._client = httpx.AsyncClient(
            timeout=timeout_seconds, headers={"User-Agent": "marketdesk"}
        )
        self._compact_only = False

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch_daily(self, symbol: str, start: date, end: date) -> FetchResult:
        if not self._api_key:
            raise ProviderError("MARKETDESK_ALPHAVANTAGE_API_KEY is not set")
        warnings: list[str] = []
        wants_full = len(trading_days(start, today_utc())) > _COMPACT_SAFE_DAYS
        if wants_full and not self._compact_only:
            try:
                payload = await self._query(symbol, "full")
            except _PremiumFull:
                self._compact_only = True
                warnings.append(_fallback_warning(symbol))
                payload = await self._query(symbol, "compact")
        else:
            if wants_full:
                warnings.append(_fallback_warning(symbol))
            payload = await self._query(symbol, "compact")
        bars, parse_warnings = _parse_series(symbol, payload, start, end)
        return FetchResult(bars=bars, warnings=warnings + parse_warnings)

    async def _query(self, symbol: str, outputsize: str) -> dict[str, Any]:
        params = {
            "function": "TIME_SERIES_DAILY",
            "symbol": symbol,
            "outputsize": outputsize,
            "apikey": self._api_key or "",
            "datatype": "json",
        }
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retry_attempts),
            wait=wait_exponential(multiplier=self._retry_wait, max=max(self._retry_wait, 30.0)),
            retry=retry_if_exception_type(_Transient),
            reraise=False,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    response = await self._get(params)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise ProviderUnavailable(
                f"Alpha Vantage is unavailable for {symbol}: {cause} "
                f"(after {self._retry_attempts} attempts)"
            ) from None
        return _classify(symbol, outputsize, response)

    async def _get(self, params: dict[str, str]) -> httpx.Response:
        async with self._pace.turn():
            return await self._send(params)

    async def _send(self, params: dict[str, str]) -> httpx.Response:
        try:
            response = await self._client.get(self._url, params=params)
        except httpx.TransportError as exc:
            # Never put the request URL in messages: it carries the API key.
            detail = str(exc) or type(exc).__name__
            raise _Transient(f"{type(exc).__name__}: {detail}") from None
        if response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code} {response.reason_phrase}".rstrip())
        return response


def _classify(symbol: str, outputsize: str, response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a successful answer, or the exception the answer stands for."""
    status = response.status_code
    if status == 429:
        raise RateLimited(f"Alpha Vantage answered HTTP 429 {response.reason_phrase}".rstrip())
    if status != 200:
        raise ProviderError(
            f"Alpha Vantage answered HTTP {status} {response.reason_phrase} for {symbol}"
        )
    try:
        payload = response.json()
    except ValueError:
        raise ProviderError(
            f"Alpha Vantage sent a response that is not JSON for {symbol}"
        ) from None
    if not isinstance(payload, dict):
        raise ProviderError(f"Alpha Vantage sent an unexpected response for {symbol}")

    if "Time Series (Daily)" in payload:
        return payload
    if "Error Message" in payload:
        raise ProviderError(f"Alpha Vantage rejected {symbol}: {payload['Error Message']}")
    note = payload.get("Note")
    if note:
        raise RateLimited(str(note))
    info = payload.get("Information")
    if info:
        text = str(info)
        lowered = text.lower()
        if any(marker in lowered for marker in _RATE_LIMIT_MARKERS):
            raise RateLimited(text)
        if outputsize == "full" and any(marker in lowered for marker in _PREMIUM_MARKERS):
            raise _PremiumFull(text)
        raise ProviderError(f"Alpha Vantage refused {symbol}: {text}")
    keys = ", ".join(sorted(map(str, payload))) or "nothing"
    raise ProviderError(f"Alpha Vantage sent no daily prices for {symbol} (got {keys})")


def _parse_series(
    symbol: str, payload: dict[str, Any], start: date, end: date
) -> tuple[list[Bar], list[str]]:
    series = payload.get("Time Series (Daily)")
    if not isinstance(series, dict):
        raise ProviderError(f"Alpha Vantage sent malformed daily prices for {symbol}")
    bars: list[Bar] = []
    bad: list[str] = []
    for key, row in series.items():
        try:
            day = date.fromisoformat(key)
        except (TypeError, ValueError):
            bad.append(str(key))
            continue
        if not start <= day <= end:
            continue
        try:
            bars.append(
                Bar(
                    symbol=symbol,
                    day=day,
                    open=float(row["1. open"]),
                    high=float(row["2. high"]),
                    low=float(row["3. low"]),
                    close=float(row["4. close"]),
                    volume=int(float(row["5. volume"])),
                )
            )
        except (KeyError, TypeError, ValueError):
            bad.append(key)
    bars.sort(key=lambda bar: bar.day)
    warnings = []
    if bad:
        shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        warnings.append(
            f"Alpha Vantage: skipped {len(bad)} malformed row(s) for {symbol} ({shown})"
        )
    return bars, warnings
