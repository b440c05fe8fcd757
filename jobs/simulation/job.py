"""The ``simulation.run`` job kind: prepare prices, then run each model day by day.

1. ``downloading_data``: the missing symbol-days of the chosen models' universe (with the
   warm-up their strategies need) are fetched with the price download machinery, most
   date-completing symbols first; a rate limit stops downloading and the run goes on with
   the dates whose data is complete.
2. Dates with incomplete data are skipped with a warning; model-days completed before (by
   this or an earlier job) are skipped unless ``replace_existing``.
3. ``running``: each date in order, each model: one model-day, its state carried from the
   model's previous completed day.
4. ``completed`` when no model-day failed, ``partial`` when some failed, ``failed`` when none
   completed; no trading dates left: failed, "No trading dates available after price data
   preparation".
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobs.context import JobContext, JobFailed
from jobs.db import today_utc, utcnow
from jobs.prices import store as prices_store
from jobs.prices.calendar import trading_days
from jobs.prices.download import FetchReport, fetch_missing
from jobs.prices.providers import make_provider
from jobs.prices.settings import prices_settings
from jobs.registry import JobKind, Outcome
from jobs.simulation import catalog
from jobs.simulation import store as sim_store
from jobs.simulation.settings import simulation_settings
from jobs.status import Status

KIND = "simulation.run"
BUSY = "Another simulation job is already running or pending"
SIMULATION_EVENT = "simulation"
# why a model-day was skipped (its `error`, as the source design words it)
SKIP_DONE = "Already completed"
SKIP_NO_PRICES = "Incomplete price data"


class SimulationParams(BaseModel):
    """What a simulation job runs: each model from its own first day to ``end_date``."""

    model_config = ConfigDict(extra="forbid")

    end_date: date
    model_starts: dict[str, date] = Field(min_length=1)
    replace_existing: bool = False
    start_date: date | None = None  # as requested (None: resumed per model)

    @model_validator(mode="after")
    def _order(self) -> SimulationParams:
        for model, start in self.model_starts.items():
            if start > self.end_date:
                raise ValueError(f"model {model}: start {start} is after end_date {self.end_date}")
        return self

    @property
    def first_day(self) -> date:
        return min(self.model_starts.values())

    @property
    def models(self) -> list[str]:
        return list(self.model_starts)


def model_days(params: SimulationParams) -> dict[str, list[date]]:
    end = min(params.end_date, today_utc())
    return {m: trading_days(start, end) for m, start in params.model_starts.items()}


async def choose_first_status(engine: Any, params: SimulationParams) -> Status:
    """downloading_data only when some price the run needs is not stored yet."""
    specs = catalog.resolve_models(params.models)
    universe = sorted({s for spec in specs for s in spec.universe})
    start = catalog.history_start(specs, params.first_day)
    missing = await prices_store.missing_days(engine.db, universe, start,
                                              min(params.end_date, today_utc()))
    return Status.DOWNLOADING_DATA if any(missing.values()) else Status.RUNNING


def _describe(params: dict[str, Any]) -> str:
    starts = params.get("model_starts") or {}
    first = min(starts.values()) if starts else "?"
    return f"{', '.join(starts)} · {first} → {params.get('end_date')}"


async def simulate(ctx: JobContext, params: SimulationParams) -> Outcome:
    engine = ctx.engine
    db = engine.db
    specs = catalog.resolve_models(params.models)
    per_model = model_days(params)
    all_days = sorted({d for days in per_model.values() for d in days})
    universe = sorted({s for spec in specs for s in spec.universe})
    history_from = catalog.history_start(specs, params.first_day)
    end = min(params.end_date, today_utc())

    # 1. prices (the worker chose downloading_data only when some are missing)
    report = FetchReport(requested=universe)
    if ctx.status == Status.DOWNLOADING_DATA:
        await ctx.log(f"Checking price data for {len(universe)} symbols, {history_from} → {end}")
        settings = prices_settings()
        provider = make_provider(settings.default_provider, settings, ctx.engine.redis)
        try:
            report = await fetch_missing(ctx, provider, universe, history_from, end)
        finally:
            await provider.aclose()
        tried = len(report.downloaded) + len(report.failed)
        await ctx.log(f"Download complete - {len(report.downloaded)}/{tried} symbols succeeded")
        if report.failed and not report.rate_limited:
            await ctx.warn(f"{len(report.failed)} symbols failed to download")
    else:
        await ctx.log("All price data available")
    held = await prices_store.stored_days(db, universe, params.first_day, end)
    needs = {spec.name: spec.universe for spec in specs}
    complete = {d for d in all_days if all(d in held[s] for s in universe)}
    skipped_dates = [d for d in all_days if d not in complete]
    if skipped_dates:
        await ctx.warn(f"Skipped {len(skipped_dates)} dates due to incomplete price data: "
                       f"{[d.isoformat() for d in skipped_dates]}")
    if not complete:
        raise JobFailed("No trading dates available after price data preparation")

    # 2. plan: which model-days run, which are skipped
    done_before = ({} if params.replace_existing else
                   await sim_store.completed_days(db, needs, params.first_day, end))
    rows: list[tuple[str, date, str, str | None]] = []
    to_run: list[tuple[date, str]] = []
    for model, days in per_model.items():
        for day in days:
            if day not in complete:
                rows.append((model, day, "skipped", SKIP_NO_PRICES))
            elif day in done_before.get(model, set()):
                rows.append((model, day, "skipped", SKIP_DONE))
            else:
                rows.append((model, day, "pending", None))
                to_run.append((day, model))
    await sim_store.init_details(db, ctx.job_id, rows)
    skipped_done = sum(1 for *_, why in rows if why == SKIP_DONE)
    if skipped_done:
        await ctx.log(f"{skipped_done} model-days already completed: skipped")

    # 3. run, date by date
    to_run.sort()
    total = len(to_run)
    if ctx.status != Status.RUNNING:
        await ctx.set_status(Status.RUNNING, phase=f"Running {total} model-days")
    await ctx.log(f"Starting execution - {len(complete)} dates, {len(specs)} models, {total} model-days")
    await ctx.progress(0, total, f"Starting execution - {len(complete)} dates, {len(specs)} models")
    by_name = {spec.name: spec for spec in specs}
    history = await prices_store.closes(db, universe, history_from, end)
    previous: dict[str, dict[str, Any] | None] = {}
    completed = failed = index = 0
    warned: dict[str, list[date]] = {}
    by_day: dict[date, list[str]] = {}
    for day, model in to_run:
        by_day.setdefault(day, []).append(model)
    for day, models in by_day.items():  # in date order; a day's model-days are stored together
        ctx.raise_if_cancelled()
        outcomes: list[sim_store.DayOutcome] = []
        for model in models:
            if model not in previous:
                before = await sim_store.result_before(db, model, day)
                previous[model] = before
            started = utcnow()
            try:
                record = catalog.step(by_name[model], previous[model], history, day)
            except Exception as exc:  # one model-day failing must not stop the others
                failed += 1
                outcomes.append(sim_store.DayOutcome(model, day, None, f"{type(exc).__name__}: {exc}",
                                                     started, utcnow()))
                await ctx.log(f"{model} {day}: failed: {exc}", level="error")
            else:
                completed += 1
                previous[model] = record
                outcomes.append(sim_store.DayOutcome(model, day, record, None, started, utcnow()))
                if record.get("warnings"):  # kept on the model-day; logged; summed up at the end
                    warned.setdefault(model, []).append(day)
                    await ctx.log(f"{model} {day.isoformat()}: {'; '.join(record['warnings'])}",
                                  level="warning")
        await sim_store.finish_days(db, ctx.job_id, outcomes)
        await engine.publish(*(
            (SIMULATION_EVENT, (f"job:{ctx.job_id}",), {
                "job_id": ctx.job_id, "model": o.model, "day": day.isoformat(), "status": o.status,
                "value": o.record["value"] if o.record else None,
                "note": "; ".join(filter(None, [o.error, *((o.record or {}).get("warnings") or ())]))})
            for o in outcomes))
        index += len(models)
        await ctx.progress(index, total, f"Processing {day.isoformat()}", min_interval=0.2)

    await ctx.progress(total, total, f"Ran {total} model-days: {completed} completed, {failed} failed")
    for model, days in warned.items():
        await ctx.warn(f"{model}: {len(days)} model-days with warnings (a wanted trade dropped, or a "
                       f"symbol without a close), first {days[0].isoformat()}; see each model-day")

    # 4. outcome
    result = {"dates": len(complete), "skipped_dates": [d.isoformat() for d in skipped_dates],
              "model_days": total, "completed": completed, "failed": failed,
              "download": report.to_api()}
    if failed == 0:
        return Outcome(Status.COMPLETED, result)
    if completed > 0:
        return Outcome(Status.PARTIAL, result)
    return Outcome(Status.FAILED, result, error=f"All {failed} model-days failed")


def resolve_trigger(start_date: date | None, end_date: date, models: list[str] | None,
                    last_done: dict[str, date | None], max_days: int) -> dict[str, date]:
    """Each model's first day; raises ValueError with a message naming the field.

    Without ``start_date`` (resume mode) each model starts the day after its last completed
    day; a model that never completed a day (cold start) runs ``end_date`` alone."""
    starts: dict[str, date] = {}
    for model in models or []:
        if start_date is not None:
            starts[model] = start_date
            continue
        last = last_done.get(model)
        starts[model] = end_date if last is None else last + timedelta(days=1)
    for model, start in starts.items():
        if start > end_date:
            raise ValueError(f"start_date: model {model!r} is complete up to {start - timedelta(days=1)}"
                             f"; nothing to do up to end_date {end_date}")
    check_span(starts, end_date, max_days)
    return starts


def check_span(starts: dict[str, date], end_date: date, max_days: int) -> None:
    """The longest range one simulation may cover, per model; ValueError naming end_date."""
    for start in starts.values():
        span = (end_date - start).days + 1
        if span > max_days:
            raise ValueError(f"end_date: the range {start} → {end_date} is {span} days; at most "
                             f"{max_days} days (MARKETDESK_MAX_SIMULATION_DAYS)")


def check_run(params: SimulationParams) -> None:
    """What every route submitting a simulation must pass (``JobKind.check``): models that
    exist, ranges within the configured limit."""
    try:
        catalog.resolve_models(params.models)
    except ValueError as exc:
        raise ValueError(f"model_starts: {exc}") from None
    check_span(params.model_starts, params.end_date, simulation_settings().max_simulation_days)


RUN = JobKind(
    name=KIND, title="Simulation", params_model=SimulationParams, func=simulate,
    first_status=Status.DOWNLOADING_DATA, choose_first_status=choose_first_status, describe=_describe,
    exclusive=BUSY, check=check_run,
)
