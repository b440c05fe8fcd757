"""The snapshot of an (exchange, var) and the ``contracts.build`` job kind that builds it.

One build per (exchange, var) at a time: the kind's key is ``<EXCHANGE>:<var>``, so a second
submit while one is pending or running returns that one (the engine's one-job-per-key rule).
A successful build replaces the snapshot whole; a failed one keeps it and records why. The
contracts page hears of both on the ``contracts:<EXCHANGE>.<var>`` topic.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from jobs.context import JobCancelled, JobContext, JobFailed, cancellable
from jobs.contracts import catalog as ccatalog
from jobs.contracts import lake
from jobs.contracts import store as cstore
from jobs.contracts.settings import ContractsSettings, contracts_settings
from jobs.contracts.stats import completeness, contract_stats
from jobs.db import Database, today_utc, utcnow
from jobs.registry import JobKind

KIND = "contracts.build"
SNAPSHOT_EVENT = "contracts"  # a snapshot landed (or a build failed)
BUILD_EVENT = "contracts-build"  # a build's progress


def topic_of(exchange: str, var: str) -> str:
    return f"contracts:{exchange}.{var}"


def key_of(exchange: str, var: str) -> str:
    return f"{exchange}:{var}"


def check_exchange_var(exchange: Any, var: Any) -> tuple[str, str]:
    """The pair, or ValueError naming the known ones."""
    known = ccatalog.known()
    if exchange not in known:
        raise ValueError(f"unknown exchange {exchange!r}; known: {', '.join(sorted(known)) or 'none'}")
    if var not in known[exchange]:
        raise ValueError(f"unknown var {var!r} for {exchange}; known: {', '.join(known[exchange])}")
    return exchange, var


class BuildParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exchange: str
    var: str
    refresh_catalog: bool = False

    @field_validator("exchange", mode="before")
    @classmethod
    def _exchange(cls, value: Any) -> str:
        if not isinstance(value, str) or value not in ccatalog.known():
            known = ", ".join(sorted(ccatalog.known())) or "none"
            raise ValueError(f"unknown exchange {value!r}; known: {known}")
        return value

    @field_validator("var", mode="before")
    @classmethod
    def _var(cls, value: Any, info: ValidationInfo) -> str:
        exchange = info.data.get("exchange")
        if exchange is None:  # the exchange is wrong already: said there
            return str(value)
        return check_exchange_var(exchange, value)[1]


@dataclass
class Built:
    payload: dict[str, Any]
    summary: dict[str, Any]


async def build_snapshot(db: Database, exchange: str, var: str, *, refresh_catalog: bool = False,
                         ctx: JobContext | None = None, settings: ContractsSettings | None = None
                         ) -> Built:
    """Fetch (or read) the catalog, scan the lake (through the scan cache), compute every
    contract's coverage and store the snapshot. Raises CatalogError or LakeError."""
    settings = settings or contracts_settings()
    started = time.perf_counter()
    report = _Reporter(ctx, exchange, var) if ctx is not None else None
    if report:
        await report(0, None, "catalog: refreshing live" if refresh_catalog else "catalog")
    fetching = ccatalog.get_catalog(db, exchange, var, refresh=refresh_catalog, settings=settings)
    cat = await (cancellable(ctx, fetching) if ctx is not None else fetching)  # a slow catalog
    t_catalog = time.perf_counter()
    symbols = [c.symbol for c in cat.contracts]
    loop = asyncio.get_running_loop()

    reports: list[Any] = []

    def progress(done: int) -> None:  # from the scanning thread
        if report is not None:
            reports.append(asyncio.run_coroutine_threadsafe(
                report(done, len(symbols), f"scanning the lake ({done}/{len(symbols)} symbols)",
                       min_interval=0.25), loop))

    try:
        scanned = await lake.scan_lake(db, settings, symbols,
                                       cancelled=(lambda: ctx.cancelled) if ctx else (lambda: False),
                                       progress=progress)
    finally:
        # every progress step is out before the snapshot's event (a late one would show the
        # build as still running after it ended)
        await asyncio.gather(*(asyncio.wrap_future(f) for f in reports), return_exceptions=True)
    today = today_utc()
    rows = await asyncio.to_thread(
        lambda: [contract_stats(c, scanned.scans.get(c.symbol), today) for c in cat.contracts])
    t_local = time.perf_counter()
    built_at = utcnow()
    timings = {"catalog": round((t_catalog - started) * 1000, 1),
               "local": round((t_local - t_catalog) * 1000, 1)}
    timings["total"] = round(timings["catalog"] + timings["local"], 1)
    summary = {
        "ok": True, "exchange": exchange, "var": var, "lake_version": settings.lake_version,
        "catalog_ok": cat.ok, "catalog_error": cat.error,
        "catalog_cached_at": cat.cached_at.isoformat(), "catalog_source": cat.source,
        "snapshot_cached_at": built_at.isoformat(), "completeness": completeness(rows),
        "timings_ms": timings, "n_contracts": len(rows),
        "scan": {"symbols": len(symbols), "cache_hits": scanned.cache_hits,
                 "rescanned": len(scanned.rescanned),
                 "rescanned_symbols": scanned.rescanned[:100], "missing_folders": len(scanned.missing)},
    }
    payload = {**summary, "contracts": rows}
    if cat.error is not None:
        error: tuple[str, str] | None = ("catalog", f"catalog: {cat.error}")
    else:
        error = None
    # a good build forgets the last failure, but a build that did not try the catalog
    # cannot forget a failed catalog refresh
    previous = await cstore.snapshot(db, exchange, var, payload=False)
    clear = error is None and (cat.live or previous is None or previous.last_error_kind != "catalog")
    await cstore.save_snapshot(db, exchange, var, built_at, json.dumps(payload), summary, error, clear)
    return Built(payload, summary)


class _Reporter:
    """Progress to the job row and to the contracts page's topic."""

    def __init__(self, ctx: JobContext, exchange: str, var: str) -> None:
        self.ctx, self.topic = ctx, topic_of(exchange, var)

    async def __call__(self, done: int, total: int | None, phase: str, min_interval: float = 0.0) -> None:
        written = self.ctx._progress_written
        await self.ctx.progress(done, total, phase, min_interval=min_interval)
        if self.ctx._progress_written != written:  # the step was recorded, not only kept in memory
            await self.ctx.engine.publish((BUILD_EVENT, (self.topic,), {
                "job_id": self.ctx.job_id, "done": done, "total": total, "phase": phase}))


async def run_build(ctx: JobContext, params: BuildParams) -> dict[str, Any]:
    topic = topic_of(params.exchange, params.var)
    try:
        built = await build_snapshot(ctx.engine.db, params.exchange, params.var,
                                     refresh_catalog=params.refresh_catalog, ctx=ctx)
    except JobCancelled:
        await ctx.engine.publish((BUILD_EVENT, (topic,), {"job_id": ctx.job_id, "state": "cancelled"}))
        raise
    except (ccatalog.CatalogError, lake.LakeError) as exc:
        await cstore.record_failure(ctx.engine.db, params.exchange, params.var, "build", str(exc), utcnow())
        await ctx.engine.publish((SNAPSHOT_EVENT, (topic,), {"ok": False, "error": str(exc),
                                                              "job_id": ctx.job_id}))
        raise JobFailed(str(exc)) from None
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        await cstore.record_failure(ctx.engine.db, params.exchange, params.var, "build", message, utcnow())
        await ctx.engine.publish((SNAPSHOT_EVENT, (topic,), {"ok": False, "error": message,
                                                              "job_id": ctx.job_id}))
        raise
    s = built.summary
    if not s["catalog_ok"]:
        await ctx.warn(f"catalog refresh failed, the cached catalog was used: {s['catalog_error']}")
    await ctx.log(f"{s['n_contracts']} contracts; {s['scan']['cache_hits']} folders from the scan cache, "
                  f"{s['scan']['rescanned']} rescanned; {s['timings_ms']['total']} ms")
    await ctx.engine.publish((SNAPSHOT_EVENT, (topic,), {
        "ok": True, "job_id": ctx.job_id, "snapshot_cached_at": s["snapshot_cached_at"]}))
    return {k: s[k] for k in ("n_contracts", "completeness", "timings_ms", "catalog_ok", "scan")}


async def _build(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    return await run_build(ctx, BuildParams.model_validate(params))


def _describe(params: dict[str, Any]) -> str:
    extra = ", catalog refreshed live" if params.get("refresh_catalog") else ""
    return f"{params.get('exchange')} {params.get('var')}{extra}"


BUILD = JobKind(
    name=KIND, title="Contracts snapshot", params_model=BuildParams, func=_build,
    describe=_describe, key=lambda p: key_of(p["exchange"], p["var"]),
)
