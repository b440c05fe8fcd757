"""Price providers: the synthetic one in-process, Alpha Vantage against a loopback fake."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from jobs.prices.calendar import trading_days
from jobs.prices.providers import (
    PROVIDER_NAMES,
    SYMBOL_RE,
    AlphaVantageProvider,
    Bar,
    FetchResult,
    PriceProvider,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SyntheticProvider,
    make_provider,
    reset_synthetic_rate_limit,
)
from jobs.prices.settings import PricesSettings as Settings
from tests.fakes.alphavantage import (
    BURST,
    DAILY_CAP,
    NOTE,
    OK,
    PREMIUM_FULL,
    FakeAlphaVantage,
    FakeResponse,
)


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "synthetic_latency_ms": 0,
        "synthetic_rate_limit_per_min": None,
        "alphavantage_api_key": "demo-key",
        "alphavantage_url": "http://127.0.0.1:9/query",
        "alphavantage_min_interval_seconds": 0,
    }
    values.update(overrides)
    return Settings(**values)


def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture(autouse=True)
def _fresh_rate_limit() -> Iterator[None]:
    reset_synthetic_rate_limit()
    yield
    reset_synthetic_rate_limit()


# -- interface ------------------------------------------------------------------------------


def test_symbol_re() -> None:
    for good in ("A", "IBM", "BRK.B", "BF-B", "ABCDEFGHIJ", "7203", "RDS-A"):
        assert SYMBOL_RE.fullmatch(good) and SYMBOL_RE.match(good), good
    for bad in ("", "ibm", ".A", "-A", "A.", "A..B", "ABCDEFGHIJK", "A B", "A\n", "$IBM"):
        assert not SYMBOL_RE.match(bad), bad


async def test_make_provider() -> None:
    assert PROVIDER_NAMES == ("synthetic", "alphavantage")
    for name in PROVIDER_NAMES:
        provider = make_provider(name, make_settings())
        try:
            assert provider.name == name
            assert isinstance(provider, PriceProvider)
        finally:
            await provider.aclose()
    with pytest.raises(ValueError, match="synthetic, alphavantage"):
        make_provider("yahoo", make_settings())


# -- synthetic ------------------------------------------------------------------------------


async def fetch_synthetic(symbol: str, start: date, end: date, **settings: object) -> FetchResult:
    provider = SyntheticProvider(make_settings(**settings))
    try:
        return await provider.fetch_daily(symbol, start, end)
    finally:
        await provider.aclose()


async def test_synthetic_same_bars_for_overlapping_ranges() -> None:
    wide = await fetch_synthetic("AAPL", date(2023, 1, 1), date(2025, 6, 30))
    narrow = await fetch_synthetic("AAPL", date(2024, 6, 3), date(2024, 9, 30))
    late = await fetch_synthetic("AAPL", date(2025, 6, 1), date(2025, 6, 30))
    by_day = {bar.day: bar for bar in wide.bars}
    assert narrow.bars and late.bars
    for bar in narrow.bars + late.bars:
        assert by_day[bar.day] == bar
    assert wide.warnings == []


async def test_synthetic_does_not_depend_on_hash_seed() -> None:
    code = (
        "import asyncio, datetime as d\n"
        "from jobs.prices.providers import SyntheticProvider\n"
        "from jobs.prices.settings import PricesSettings as Settings\n"
        "s = Settings(synthetic_latency_ms=0, synthetic_rate_limit_per_min=None)\n"
        "r = asyncio.run(SyntheticProvider(s).fetch_daily('MSFT', d.date(2024, 3, 1),"
        " d.date(2024, 3, 8)))\n"
        "print([(b.open, b.high, b.low, b.close, b.volume) for b in r.bars])\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    here = await fetch_synthetic("MSFT", date(2024, 3, 1), date(2024, 3, 8))
    assert stdout.decode().strip() == str(
        [(b.open, b.high, b.low, b.close, b.volume) for b in here.bars]
    )


async def test_synthetic_only_trading_days() -> None:
    result = await fetch_synthetic("IBM", date(2024, 12, 20), date(2025, 7, 10))
    days = [bar.day for bar in result.bars]
    assert days == trading_days(date(2024, 12, 20), date(2025, 7, 10))
    assert all(day.weekday() < 5 for day in days)
    for closed in (date(2024, 12, 25), date(2025, 1, 1), date(2025, 1, 9), date(2025, 7, 4)):
        assert closed not in days
    assert date(2025, 7, 3) in days and date(2025, 7, 7) in days


async def test_synthetic_ohlc_sanity_and_plausible_walk() -> None:
    levels = set()
    for symbol in ("AAPL", "MSFT", "BRK.B", "BF-B", "X"):
        result = await fetch_synthetic(symbol, date(2023, 1, 1), date(2024, 12, 31))
        assert len(result.bars) == len(trading_days(date(2023, 1, 1), date(2024, 12, 31)))
        for bar in result.bars:
            assert bar.symbol == symbol
            assert 0 < bar.low <= min(bar.open, bar.close)
            assert bar.high >= max(bar.open, bar.close)
            assert isinstance(bar.volume, int) and bar.volume > 0
        closes = [bar.close for bar in result.bars]
        returns = [math.log(b / a) for a, b in zip(closes, closes[1:], strict=False)]
        assert 0.005 < statistics.stdev(returns) < 0.03, symbol
        levels.add(closes[0])
    assert len(levels) == 5  # the price level depends on the symbol


async def test_synthetic_is_fast() -> None:
    await fetch_synthetic("WARM", date(2023, 1, 1), date(2025, 1, 1))  # calendar warm-up
    started = time.perf_counter()
    for i in range(20):
        await fetch_synthetic(f"FAST{i}", date(2023, 1, 1), date(2025, 1, 1))
    assert time.perf_counter() - started < 1.0


async def test_synthetic_unknown_symbol() -> None:
    with pytest.raises(ProviderError) as info:
        await fetch_synthetic("not a ticker", date(2024, 1, 1), date(2024, 2, 1))
    assert str(info.value) == "Unknown symbol 'not a ticker'"


async def test_synthetic_no_future_bars() -> None:
    result = await fetch_synthetic(
        "IBM", today() - timedelta(days=20), today() + timedelta(days=30)
    )
    assert result.bars
    assert max(bar.day for bar in result.bars) <= today()
    future = await fetch_synthetic("IBM", today() + timedelta(days=1), today() + timedelta(days=9))
    assert future.bars == []


async def test_synthetic_latency() -> None:
    started = time.monotonic()
    await fetch_synthetic("IBM", date(2024, 1, 1), date(2024, 1, 31), synthetic_latency_ms=150)
    assert time.monotonic() - started >= 0.14


async def test_synthetic_rate_limit_is_shared_and_resettable() -> None:
    settings = make_settings(synthetic_rate_limit_per_min=3)
    first, second = SyntheticProvider(settings), SyntheticProvider(settings)
    span = (date(2024, 1, 1), date(2024, 1, 31))
    await first.fetch_daily("IBM", *span)
    await second.fetch_daily("AAPL", *span)
    await first.fetch_daily("MSFT", *span)
    with pytest.raises(RateLimited) as info:
        await second.fetch_daily("IBM", *span)
    assert str(info.value) == "Synthetic provider rate limit of 3 requests per minute reached"
    reset_synthetic_rate_limit()
    assert (await second.fetch_daily("IBM", *span)).bars


# -- alphavantage ---------------------------------------------------------------------------

OLD = (date(2023, 1, 1), date(2023, 3, 31))  # far more than 100 trading days ago


@pytest.fixture
def fake() -> Iterator[FakeAlphaVantage]:
    with FakeAlphaVantage(symbols=("IBM", "AAPL")) as server:
        yield server


def av(fake: FakeAlphaVantage, **overrides: object) -> AlphaVantageProvider:
    settings = make_settings(alphavantage_url=fake.url, **overrides)
    return AlphaVantageProvider(settings, retry_wait_seconds=0.01)


def expected_bars(fake: FakeAlphaVantage, symbol: str, start: date, end: date) -> list[Bar]:
    bars = []
    for key, row in fake.series(symbol).items():
        day = date.fromisoformat(key)
        if start <= day <= end:
            bars.append(
                Bar(
                    symbol=symbol,
                    day=day,
                    open=float(row["1. open"]),
                    high=float(row["2. high"]),
                    low=float(row["3. low"]),
                    close=float(row["4. close"]),
                    volume=int(row["5. volume"]),
                )
            )
    return sorted(bars, key=lambda bar: bar.day)


async def test_av_parses_and_filters_to_range(fake: FakeAlphaVantage) -> None:
    provider = av(fake)
    try:
        result = await provider.fetch_daily("IBM", *OLD)
    finally:
        await provider.aclose()
    assert result.warnings == []
    assert result.bars == expected_bars(fake, "IBM", *OLD)
    assert [bar.day for bar in result.bars] == trading_days(*OLD)
    (request,) = fake.requests
    assert request.params == {
        "function": "TIME_SERIES_DAILY",
        "symbol": "IBM",
        "outputsize": "full",
        "apikey": "demo-key",
        "datatype": "json",
    }


async def test_av_recent_start_asks_compact(fake: FakeAlphaVantage) -> None:
    start = today() - timedelta(days=40)
    provider = av(fake)
    try:
        result = await provider.fetch_daily("AAPL", start, today())
    finally:
        await provider.aclose()
    assert result.warnings == []
    assert result.bars == expected_bars(fake, "AAPL", start, today())
    assert [r.outputsize for r in fake.requests] == ["compact"]


@pytest.mark.parametrize("body", [NOTE, DAILY_CAP, BURST], ids=["note", "daily-cap", "burst"])
async def test_av_rate_limit_bodies(fake: FakeAlphaVantage, body: dict[str, str]) -> None:
    fake.script(body)
    provider = av(fake)
    try:
        with pytest.raises(RateLimited) as info:
            await provider.fetch_daily("IBM", *OLD)
    finally:
        await provider.aclose()
    assert str(info.value) == next(iter(body.values()))
    assert len(fake.requests) == 1


async def test_av_premium_full_falls_back_to_compact_and_remembers(
    fake: FakeAlphaVantage,
) -> None:
    fake.full_is_premium = True
    provider = av(fake)
    try:
        first = await provider.fetch_daily("IBM", date(2020, 1, 1), today())
        second = await provider.fetch_daily("AAPL", date(2020, 1, 1), today())
    finally:
        await provider.aclose()
    assert [(r.symbol, r.outputsize) for r in fake.requests] == [
        ("IBM", "full"),
        ("IBM", "compact"),
        ("AAPL", "compact"),
    ]
    assert first.warnings == [
        "Alpha Vantage: outputsize=full is a premium feature; "
        "fell back to compact (last 100 days) for IBM"
    ]
    assert len(first.bars) == 100
    assert first.bars == expected_bars(fake, "IBM", date(2020, 1, 1), today())[-100:]
    assert len(second.bars) == 100 and "AAPL" in second.warnings[0]


async def test_av_premium_via_script_is_only_for_full(fake: FakeAlphaVantage) -> None:
    fake.script(PREMIUM_FULL, PREMIUM_FULL)
    provider = av(fake)
    try:
        with pytest.raises(ProviderError, match="premium feature") as info:
            await provider.fetch_daily("IBM", *OLD)
    finally:
        await provider.aclose()
    assert not isinstance(info.value, ProviderUnavailable)
    assert [r.outputsize for r in fake.requests] == ["full", "compact"]


async def test_av_error_message_fails_only_that_symbol(fake: FakeAlphaVantage) -> None:
    provider = av(fake)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.fetch_daily("NOPE", *OLD)
        good = await provider.fetch_daily("IBM", *OLD)
    finally:
        await provider.aclose()
    message = str(info.value)
    assert "NOPE" in message and "Invalid API call" in message
    assert good.bars == expected_bars(fake, "IBM", *OLD)


async def test_av_unknown_information_is_provider_error(fake: FakeAlphaVantage) -> None:
    fake.script({"Information": "The demo API key is for demo purposes only."}, symbol="IBM")
    provider = av(fake)
    try:
        with pytest.raises(ProviderError, match="for demo purposes only"):
            await provider.fetch_daily("IBM", *OLD)
    finally:
        await provider.aclose()


async def test_av_503_twice_then_ok(fake: FakeAlphaVantage) -> None:
    fake.script(503, 503, OK, symbol="IBM")
    provider = av(fake)
    try:
        result = await provider.fetch_daily("IBM", *OLD)
    finally:
        await provider.aclose()
    assert result.bars == expected_bars(fake, "IBM", *OLD)
    assert len(fake.requests) == 3


async def test_av_503_always_is_unavailable(fake: FakeAlphaVantage) -> None:
    fake.always(503, symbol="IBM")
    provider = av(fake)
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await provider.fetch_daily("IBM", *OLD)
        assert (await provider.fetch_daily("AAPL", *OLD)).bars
    finally:
        await provider.aclose()
    assert "503" in str(info.value) and "IBM" in str(info.value)
    assert "demo-key" not in str(info.value)
    assert [r.symbol for r in fake.requests] == ["IBM", "IBM", "IBM", "AAPL"]


async def test_av_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = make_settings(alphavantage_url=f"http://127.0.0.1:{port}/query")
    provider = AlphaVantageProvider(settings, retry_wait_seconds=0.01, retry_attempts=2)
    try:
        with pytest.raises(ProviderUnavailable, match="Connect"):
            await provider.fetch_daily("IBM", *OLD)
    finally:
        await provider.aclose()


async def test_av_slow_answer_times_out_as_unavailable(fake: FakeAlphaVantage) -> None:
    fake.always(FakeResponse(body={"Note": "late"}, delay_seconds=0.5))
    provider = AlphaVantageProvider(
        make_settings(alphavantage_url=fake.url),
        retry_wait_seconds=0.01,
        retry_attempts=2,
        timeout_seconds=0.1,
    )
    try:
        with pytest.raises(ProviderUnavailable, match="Timeout"):
            await provider.fetch_daily("IBM", *OLD)
    finally:
        await provider.aclose()


async def test_av_requests_are_paced(fake: FakeAlphaVantage) -> None:
    fake.script(503, symbol="IBM")  # the retry is paced too
    provider = av(fake, alphavantage_min_interval_seconds=0.2)
    try:
        await provider.fetch_daily("IBM", *OLD)
        await provider.fetch_daily("AAPL", *OLD)
    finally:
        await provider.aclose()
    times = [r.monotonic for r in fake.requests]
    assert len(times) == 3
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.18, gaps


async def test_av_missing_key(fake: FakeAlphaVantage) -> None:
    provider = av(fake, alphavantage_api_key=None)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.fetch_daily("IBM", *OLD)
    finally:
        await provider.aclose()
    assert str(info.value) == "MARKETDESK_ALPHAVANTAGE_API_KEY is not set"
    assert fake.requests == []
