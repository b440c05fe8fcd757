"""The ``prices.download`` job kind: fetch the daily bars not stored yet, symbol by symbol.

Also the machinery other kinds use to make sure prices are present (``fetch_missing``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from jobs.context import JobContext, cancellable
from jobs.db import today_utc
from jobs.items import Items
from jobs.prices import store
from jobs.prices.calendar import trading_days
from jobs.prices.params import end_not_before_start, iso_date, tickers
from jobs.prices.providers import (
    PROVIDER_NAMES,
    PriceProvider,
    ProviderError,
    RateLimited,
    make_provider,
)
from jobs.prices.settings import prices_settings
from jobs.registry import JobKind, Outcome
from jobs.status import Status

MAX_SYMBOLS = 100
EARLIEST = date(1990, 1, 1)
PRICES_TOPIC = "prices"


class DownloadParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The count (1..MAX_SYMBOLS, after removing duplicates) is checked in _tickers, so the
    # message can say what is allowed; the schema still states it.
    symbols: list[str] = Field(json_schema_extra={"minItems": 1, "maxItems": MAX_SYMBOLS})
    start_date: date
    end_date: date
    provider: str | None = None

    @field_validator("symbols", mode="before")
    @classmethod
    def _tickers(cls, value: Any) -> list[str]:
        return tickers(value, MAX_SYMBOLS, "download")

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> date:
        return iso_date(value)

    @field_validator("start_date")
    @classmethod
    def _start(cls, value: date) -> date:
        if value < EARLIEST:
            raise ValueError(f"must be on or after {EARLIEST.isoformat()}, got {value.isoformat()}")
        if value > today_utc():
            raise ValueError(f"{value.isoformat()} is in the future; no prices exist yet "
                             f"(today is {today_utc().isoformat()})")
        return value

    @field_validator("end_date")
    @classmethod
    def _end(cls, value: date, info: ValidationInfo) -> date:
        return end_not_before_start(info.data.get("start_date"), value)

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if value not in PROVIDER_NAMES:
            raise ValueError(f"unknown provider {value!r}; allowed: {', '.join(PROVIDER_NAMES)}")
        return value


@dataclass
class FetchReport:
    """What fetching the missing days of some symbols achieved."""

    requested: list[str]
    downloaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_attempted: list[str] = field(default_factory=list)
    rate_limited: bool = False
    bars_saved: int = 0
    still_missing: dict[str, int] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        return {"requested": self.requested, "downloaded": self.downloaded, "failed": self.failed,
                "not_attempted": self.not_attempted, "rate_limited": self.rate_limited,
                "bars_saved": self.bars_saved, "still_missing": self.still_missing}


async def fetch_missing(ctx: JobContext, provider: PriceProvider, symbols: list[str],
                        start: date, end: date) -> FetchReport:
    """Download what is missing for ``symbols`` in [start, end], most date-completing first.

    Progress counts symbols; a rate limit stops downloading and keeps what was fetched.
    """
    db = ctx.engine.db
    end = min(end, today_utc())
    missing = await store.missing_days(db, symbols, start, end)
    order = store.prioritize(missing)
    report = FetchReport(requested=list(symbols))
    total = len(order)
    if not order:
        await ctx.progress(0, 0, f"All {len(symbols)} symbols already stored")
        return report
    await ctx.log(f"Missing data for {total} of {len(symbols)} symbols")
    for index, symbol in enumerate(order):
        ctx.raise_if_cancelled()
        await ctx.progress(index, total, f"Downloading {symbol} ({index + 1}/{total})")
        days = missing[symbol]
        try:
            got = await cancellable(ctx, provider.fetch_daily(symbol, min(days), max(days)))
        except RateLimited as exc:
            report.rate_limited = True
            report.not_attempted = order[index:]
            await ctx.log(f"{provider.name}: {exc}", level="warning")
            stopped = f"Rate limit reached - downloaded {len(report.downloaded)}/{total} symbols"
            # the phase must not stay "Downloading <symbol>" on a job that stopped
            await ctx.progress(index, total, stopped)
            await ctx.warn(stopped)
            break
        except ProviderError as exc:
            report.failed[symbol] = str(exc)
            await ctx.warn(f"{symbol}: {exc}")
            continue
        bars = [b for b in got.bars if b.day in days]
        report.bars_saved += await store.save_bars(db, bars, provider.name)
        for message in got.warnings:
            await ctx.warn(message)
        if bars:
            report.downloaded.append(symbol)
        else:
            report.failed[symbol] = f"{provider.name} returned no bars for the requested days"
            await ctx.warn(f"{symbol}: {report.failed[symbol]}")
        await ctx.engine.publish(("prices", (PRICES_TOPIC,), {"symbols": [symbol]}))
        await ctx.log(f"{symbol}: stored {len(bars)} of {len(days)} missing days")
    else:
        await ctx.progress(total, total, f"Downloaded {len(report.downloaded)}/{total} symbols")
    after = await store.missing_days(db, symbols, start, end)
    report.still_missing = {s: len(d) for s, d in after.items() if d}
    return report


def _describe(params: dict[str, Any]) -> str:
    symbols = params.get("symbols") or []
    shown = ", ".join(symbols[:5]) + (f" +{len(symbols) - 5}" if len(symbols) > 5 else "")
    return f"{shown} · {params.get('start_date')} → {params.get('end_date')}"


def items_of(report: FetchReport) -> Items:
    """Each requested symbol as an item: stored (fully or in part), failed with its error, or
    skipped (not asked: a rate limit stopped the download and kept what was fetched)."""
    items = Items()
    skipped = set(report.not_attempted)
    for symbol in report.requested:
        if symbol in report.failed:
            items.failed[symbol] = report.failed[symbol]  # warned and logged as it happened
        elif symbol in skipped:
            items.skip(symbol, "rate limit reached before it was asked for")
        else:
            items.ok(symbol)
    return items


async def download(ctx: JobContext, params: DownloadParams) -> Outcome:
    settings = prices_settings()
    provider = make_provider(params.provider or settings.default_provider, settings, ctx.engine.redis)
    try:
        report = await fetch_missing(ctx, provider, params.symbols, params.start_date,
                                     params.end_date)
    finally:
        await provider.aclose()
    items = items_of(report)
    result = {**report.to_api(), **items.to_result()}
    days = len(trading_days(params.start_date, min(params.end_date, today_utc())))
    result["trading_days"] = days
    status = items.status
    if status == Status.FAILED:
        error = items.outcome().error
        if report.bars_saved == 0:
            reasons = "; ".join(f"{s}: {e}" for s, e in report.failed.items())
            if report.rate_limited and not reasons:
                reasons = "rate limit reached before any symbol was downloaded"
            error = f"No price data downloaded. {reasons}".strip()
        return Outcome(status, result, error=error)
    if report.still_missing:  # some symbols lack days: skipped, or the provider had none
        await ctx.warn("Incomplete: " + ", ".join(f"{s} ({n} of {days} days missing)"
                                                 for s, n in sorted(report.still_missing.items())))
        status = Status.PARTIAL
    return Outcome(status, result)


DOWNLOAD = JobKind(
    name="prices.download", title="Price download", params_model=DownloadParams, func=download,
    first_status=Status.DOWNLOADING_DATA, topics=(PRICES_TOPIC,), describe=_describe,
)
