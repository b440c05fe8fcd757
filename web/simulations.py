"""Simulations: the trigger and status API, the /simulations page, the job page's grid and chart."""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import math
from datetime import date, timedelta
from typing import Annotated, Any

from litestar import Response, Router, get, post
from litestar.di import Provide
from litestar.enums import MediaType, RequestEncodingType
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, Parameter
from litestar.plugins.htmx import HTMXRequest
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_404_NOT_FOUND, HTTP_503_SERVICE_UNAVAILABLE
from pydantic import ValidationError

from jobs import queue, store
from jobs.db import today_utc, utcnow
from jobs.engine import Engine
from jobs.events import Event
from jobs.prices.calendar import trading_days
from jobs.registry import ParamsError, pydantic_errors
from jobs.simulation import catalog, results
from jobs.simulation import store as sim_store
from jobs.simulation.job import KIND, SIMULATION_EVENT, SimulationParams, model_days
from jobs.simulation.settings import simulation_settings
from jobs.simulation.trigger import SimulationBusy, trigger
from web.common import (
    FORM_ERRORS,
    echoed,
    errors,
    form_errors,
    html,
    is_embed,
    json_response,
    page,
    redirect_to,
)
from web.render import render
from web.slice import Message, NavEntry, Region, WebSlice

CHART_W, CHART_H, DD_H = 720, 240, 120
PAD_L, PAD_R, PAD_T, PAD_B = 70, 14, 12, 26
MAX_MARKERS = 250  # hover markers per model: a long run gets every n-th day
COLOURS = ("#2457d6", "#1f8a4c", "#c05621", "#6b46c1", "#c53030", "#2c7a7b", "#b7791f", "#4a5568")


# -- the job page's panels --------------------------------------------------------------------
def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round values (1, 2, 2.5 or 5 times a power of ten apart) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    ticks, v = [], first
    while v < hi + step * 0.999:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _date_ticks(days: list[date], count: int = 6) -> list[int]:
    if len(days) <= count:
        return list(range(len(days)))
    return sorted({round(i * (len(days) - 1) / (count - 1)) for i in range(count)})


def _chart(curves: dict[str, list[tuple[date, float]]],
           drawdowns: dict[str, list[tuple[date, float]]]) -> dict[str, Any]:
    """Server-side SVG geometry: the equity curves over one date axis, with date ticks, value
    ticks and a marker per day (its value in a <title>), and the drawdown panel under them."""
    days = sorted({d for curve in curves.values() for d, _ in curve})
    values = [v for curve in curves.values() for _, v in curve]
    if not days:
        return {"lines": [], "days": []}
    ticks = nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    span = max(len(days) - 1, 1)
    x_of = {d: round(PAD_L + (CHART_W - PAD_L - PAD_R) * i / span, 1) for i, d in enumerate(days)}
    every = max(1, math.ceil(len(days) / MAX_MARKERS))

    def y(v: float, top: float, bottom: float, height: float) -> float:
        return round(height - PAD_B - (height - PAD_T - PAD_B) * (v - bottom) / ((top - bottom) or 1), 1)

    deepest = max((dd for series in drawdowns.values() for _, dd in series), default=0.0)
    dd_ticks = nice_ticks(0.0, max(deepest, 0.001), 3)
    dd_lo = dd_ticks[-1]
    lines = []
    for i, (model, curve) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        marks = [{"x": x_of[d], "y": y(v, hi, lo, CHART_H), "title": f"{model} {d.isoformat()}: {v:,.2f}"}
                 for n, (d, v) in enumerate(curve) if n % every == 0 or n == len(curve) - 1]
        dd = drawdowns.get(model, [])
        lines.append({
            "model": model, "colour": colour, "last": curve[-1][1] if curve else None,
            "points": " ".join(f"{x_of[d]},{y(v, hi, lo, CHART_H)}" for d, v in curve),
            "marks": marks,
            "dd_points": " ".join(f"{x_of[d]},{y(-v, 0.0, -dd_lo, DD_H)}" for d, v in dd),
            "dd_marks": [{"x": x_of[d], "y": y(-v, 0.0, -dd_lo, DD_H),
                          "title": f"{model} {d.isoformat()}: drawdown {v:.2%}"}
                         for n, (d, v) in enumerate(dd) if n % every == 0 or n == len(dd) - 1],
        })
    return {
        "lines": lines, "days": [days[0].isoformat(), days[-1].isoformat()],
        "w": CHART_W, "h": CHART_H, "dd_h": DD_H, "left": PAD_L, "right": CHART_W - PAD_R,
        "top": PAD_T, "bottom": CHART_H - PAD_B, "dd_bottom": DD_H - PAD_B,
        "x_ticks": [{"x": x_of[days[i]], "label": days[i].isoformat()} for i in _date_ticks(days)],
        "y_ticks": [{"y": y(t, hi, lo, CHART_H), "label": f"{t:,.0f}"} for t in ticks],
        "dd_ticks": [{"y": y(-t, 0.0, -dd_lo, DD_H),
                      "label": f"{-t:.{2 if dd_lo < 0.05 else 1}%}" if t else "0%"} for t in dd_ticks],
    }


def read_params(params: Any) -> tuple[SimulationParams | None, str | None]:
    """A stored job's params, or why they cannot be read (a job from an older version, a model
    since removed from the models file): its page shows the reason instead of failing."""
    try:
        parsed = SimulationParams.model_validate(params)
    except ValidationError as exc:
        return None, "; ".join(f"{e['field']}: {e['message']}" for e in pydantic_errors(exc))[:500]
    try:
        known = catalog.load_models()
    except ValueError as exc:
        return parsed, str(exc)[:500]
    unknown = [m for m in parsed.models if m not in known]
    if unknown:
        return parsed, (f"unknown model{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(repr(m) for m in unknown)}; known models: "
                        f"{', '.join(sorted(known))}")[:500]
    return parsed, None


async def results_context(engine: Engine, params: SimulationParams, job_id: str) -> dict[str, Any]:
    """The job page's chart and metrics; the metrics are the status API's (results.job_metrics)."""
    specs = catalog.load_models()
    series, curves = await results.job_series(engine.db, params)
    drawdowns: dict[str, list[tuple[date, float]]] = {}
    rows = []
    for model, start in params.model_starts.items():
        cash = results.initial_cash(model, specs)
        daily = results.daily_metrics(series[model], cash)
        window = curves[model]
        drawdowns[model] = [(d, daily[d]["drawdown"]) for d, _ in window]
        spec = specs.get(model)
        rows.append({"model": model, "title": spec.display_title if spec else model,
                     "last_value": window[-1][1] if window else None,
                     **results.run_and_inception(series[model], start, cash)})
    return {"chart": _chart(curves, drawdowns), "metrics": rows, "job_id": job_id}


async def grid_context(engine: Engine, job: dict[str, Any]) -> dict[str, Any]:
    params = SimulationParams.model_validate(job["params"])
    details = await sim_store.details(engine.db, job["id"])
    cells = {(d["model"], d["date"]): d["status"] for d in details}
    # why a model-day was skipped or failed, and what it warned about: in the cell's tooltip
    notes = {(d["model"], d["date"]): "; ".join(filter(None, [d["error"], *d["warnings"]]))
             for d in details if d["error"] or d["warnings"]}
    per_model = model_days(params)
    days = sorted({d.isoformat() for ds in per_model.values() for d in ds})
    return {"models": params.models, "days": days, "cells": cells, "notes": notes,
            "job_id": job["id"]}


async def _simulation_job(engine: Engine, topic: str, event: Event | None) -> dict[str, Any] | None:
    """The job of a ``job:<id>`` topic (its payload), if it is a simulation."""
    if event is not None and event.type == "job":
        return event.data if event.data.get("kind") == KIND else None
    job = await store.get_job(engine.db, topic.split(":", 1)[1])
    return None if job is None or job.kind != KIND else {"id": job.id, "params": job.params}


def _unreadable(reason: str) -> list[Message]:
    return [("sim-grid", render("simulation/unreadable.html", reason=reason))]


async def _results(engine: Engine, job: dict[str, Any]) -> list[Message]:
    params, _ = read_params(job["params"])
    if params is None:
        return []
    ctx = await results_context(engine, params, job["id"])
    return [("sim-chart", render("simulation/chart.html", **ctx)),
            ("sim-metrics", render("simulation/metrics.html", **ctx))]


async def _grid(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    """The model × date grid: on the page, and again when the job enters `running` (it has
    planned its model-days by then)."""
    job = await _simulation_job(engine, topic, event)
    if job is None or (event is not None and job.get("status") != "running"):
        return []
    params, reason = read_params(job["params"])
    if params is None:
        return _unreadable(reason or "")
    return [("sim-grid", render("simulation/grid.html", reason=reason,
                                **await grid_context(engine, job)))]


async def _cell(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    d = event.data if event is not None else {}
    return [(f"cell-{d['model']}-{d['day']}",
             render("simulation/cell.html", model=d["model"], day=d["day"], status=d["status"],
                    note=d.get("note")))]


async def _chart_and_metrics(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    job = await _simulation_job(engine, topic, None)
    return [] if job is None else await _results(engine, job)


REGIONS = (
    Region("job", _grid, follows=("job",), keyed=True),
    Region("job", _cell, follows=(SIMULATION_EVENT,), on_connect=False, keyed=True),
    # equity curves and metrics over every day of the run: coalesced, not once per model-day
    Region("job", _chart_and_metrics, follows=(SIMULATION_EVENT,), coalesce=True, keyed=True),
)


# -- API --------------------------------------------------------------------------------------
@post("/simulate/trigger", name="simulate-trigger", status_code=200,
      responses=errors(413, 429, 503))
async def simulate_trigger(engine: Engine, data: dict[str, Any]) -> Response[dict[str, Any]]:
    """Validate and record a simulation job; answers at once (the worker downloads prices).
    While another simulation is pending or running: 400, as the source design answers."""
    try:
        done = await trigger(engine, data)
    except SimulationBusy as exc:  # answered here: the common refusal under load, kept cheap
        return Response({"status_code": 400, "detail": str(exc)}, status_code=HTTP_400_BAD_REQUEST)
    return Response({"job_id": done.job.id, "status": done.job.status,
                     "total_model_days": done.total_model_days, "message": done.message,
                     "warnings": done.warnings})


@get("/simulate/status/{job_id:str}", name="simulate-status", responses=errors(404))
async def simulate_status(engine: Engine, job_id: str) -> dict[str, Any]:
    job = await store.get_job(engine.db, job_id)
    if job is None or job.kind != KIND:
        raise queue.JobNotFound(job_id)
    params, reason = read_params(job.params)
    if params is None:  # still a status: what the job is, and why its plan cannot be shown
        return {"job_id": job.id, "status": job.status, "error": job.error, "params_error": reason,
                "warnings": list(job.warnings or [])}
    details = await sim_store.details(engine.db, job_id)
    per_model = model_days(params)
    total = sum(len(ds) for ds in per_model.values())
    counts = {s: sum(1 for d in details if d["status"] == s) for s in ("completed", "failed", "skipped")}
    end = min(params.end_date, today_utc())
    return {
        "job_id": job.id, "status": job.status,
        "progress": {"total_model_days": total, "completed": counts["completed"],
                     "failed": counts["failed"], "skipped": counts["skipped"],
                     "pending": total - counts["completed"] - counts["failed"] - counts["skipped"]},
        "date_range": [d.isoformat() for d in trading_days(params.first_day, end)],
        "models": params.models,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "completed_at": job.finished_at.isoformat() if job.finished_at else None,
        "total_duration_seconds": job.duration_seconds if job.finished_at else None,
        "error": job.error,
        "details": details,
        "warnings": list(job.warnings or []),
        "params_error": reason,
        # per model: this run (from its value the day before its first day) and since inception
        "metrics": await results.job_metrics(engine.db, params),
    }


def _csv(text: str, filename: str) -> Response[str]:
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _no_data(q: results.ResultsQuery) -> Response[dict[str, Any]]:
    return Response({"status_code": 404, "detail": results.NOT_FOUND, "filters": q.echo()},
                    status_code=HTTP_404_NOT_FOUND)


_FILTER_DOCS = {
    "job_id": "model-days this job executed",
    "start_date": "from this day (YYYY-MM-DD)",
    "end_date": "up to this day (YYYY-MM-DD)",
    "model": "one model, or several comma-separated",
    "limit": "at most this many records (1-1000, default 100; the CSV: every record)",
    "offset": "skip this many records first",
}


# what the document says of the answers below besides their own
NO_DATA = {404: json_response(f'Nothing found: "{results.NOT_FOUND}", with the filters (filters)')}
CSV = {200: ResponseSpec(data_container=str, description="CSV with a header row (an attachment)",
                         media_type="text/csv", generate_examples=False)}


def _filter(name: str) -> Any:
    return Parameter(query=name, required=False, description=_FILTER_DOCS[name])


def _results_filters(
    job_id: Annotated[str | None, _filter("job_id")] = None,
    start_date: Annotated[str | None, _filter("start_date")] = None,
    end_date: Annotated[str | None, _filter("end_date")] = None,
    model: Annotated[str | None, _filter("model")] = None,
    limit: Annotated[str | None, _filter("limit")] = None,
    offset: Annotated[str | None, _filter("offset")] = None,
) -> dict[str, str | None]:
    """The filters /results and /results.csv share, as given (text): results.parse_query
    checks them and names the bad one."""
    return {"job_id": job_id, "start_date": start_date, "end_date": end_date, "model": model,
            "limit": limit, "offset": offset}


RESULTS_FILTERS = {"raw": Provide(_results_filters, sync_to_thread=False)}


@get("/results", name="results", responses=NO_DATA, dependencies=RESULTS_FILTERS)
async def results_api(engine: Engine, raw: dict[str, str | None]) -> Response[dict[str, Any]]:
    """Executed model-days: positions before and after, trades, daily metrics, status and
    timings, by day then model. Filters combine. A bad one: 400 naming it; nothing found: 404
    "No trading data found" with the filters."""
    q = await results.parse_query(engine.db, raw)
    records, total = await results.query_results(engine.db, q)
    if not total:
        return _no_data(q)
    return Response({"results": records, "count": len(records), "total": total, "limit": q.limit,
                     "offset": q.offset, "filters": q.echo()})


@get("/results.csv", name="results-csv", responses={**CSV, **NO_DATA}, dependencies=RESULTS_FILTERS)
async def results_csv(engine: Engine, raw: dict[str, str | None]) -> Response[Any]:
    """``/results`` as a spreadsheet: one row per model-day (positions and trades flattened),
    a header row, ISO dates; the same filters (every record unless limit is given)."""
    q = await results.parse_query(engine.db, raw, csv_export=True)
    records, total = await results.query_results(engine.db, q)
    if not total:
        return _no_data(q)
    text = await asyncio.to_thread(results.results_csv, records)
    return _csv(text, f"results-{q.job_id[:8]}.csv" if q.job_id else "results.csv")


@get("/simulations/{job_id:str}/equity.csv", name="equity-csv", responses={**CSV, **errors(404)})
async def equity_csv(engine: Engine, job_id: str) -> Response[str]:
    """The job page's equity curves: date, then each model's value at the close."""
    job = await store.get_job(engine.db, job_id)
    if job is None or job.kind != KIND:
        raise queue.JobNotFound(job_id)
    params, reason = read_params(job.params)
    if params is None:
        raise ParamsError([{"field": "job_id", "message": f"this job's params cannot be read: {reason}"}])
    _, curves = await results.job_series(engine.db, params)
    return _csv(await asyncio.to_thread(results.equity_csv, curves), f"equity-{job_id[:8]}.csv")


@get("/health", name="health")
async def health(engine: Engine) -> Response[dict[str, Any]]:
    """The source design's health answer (``/healthz`` is ours, with Redis and workers)."""
    try:
        await engine.db.ping()
        database = "connected"
    except Exception:  # report, don't raise: this answer says what is wrong
        database = "disconnected"
    healthy = database == "connected"
    return Response({"status": "healthy" if healthy else "unhealthy", "database": database,
                     "timestamp": utcnow().isoformat(), "version": _version()},
                    status_code=200 if healthy else HTTP_503_SERVICE_UNAVAILABLE)


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("marketdesk")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@get("/api/models", name="api-models")
async def api_models() -> dict[str, Any]:
    return {"models": catalog.models_api(), "strategies": catalog.strategies_api()}


# -- page -------------------------------------------------------------------------------------
def _form_defaults() -> dict[str, Any]:
    end = today_utc() - timedelta(days=1)
    return {"start_date": (end - timedelta(days=13)).isoformat(), "end_date": end.isoformat(),
            "models": [s.name for s in catalog.enabled_models()], "replace_existing": False}


async def _page_context(engine: Engine) -> dict[str, Any]:
    jobs, _ = await store.list_jobs(engine.db, kind=KIND, limit=20)
    return {"all_models": catalog.models_api(), "jobs": jobs,
            "max_days": simulation_settings().max_simulation_days}


@get("/simulations", name="simulations", media_type=MediaType.HTML)
async def simulations_page(request: HTMXRequest, engine: Engine) -> Response[str]:
    return page(request, "simulation/page.html", form=_form_defaults(), errors={},
                **await _page_context(engine))


@post("/simulations/run", name="simulations-run-form", status_code=200,
      media_type=MediaType.HTML, responses=FORM_ERRORS)
async def run_form(
    request: HTMXRequest,
    engine: Engine,
    data: dict[str, Any] = Body(media_type=RequestEncodingType.URL_ENCODED),
) -> Response[Any]:
    form_data = await request.form()
    models = [m for m in form_data.getall("models") if m] if "models" in form_data else []
    form = {"start_date": str(data.get("start_date") or ""), "end_date": str(data.get("end_date") or ""),
            "models": models, "replace_existing": bool(data.get("replace_existing"))}
    raw = {"start_date": form["start_date"] or None, "end_date": form["end_date"],
           "models": models or None, "replace_existing": form["replace_existing"]}
    errors: dict[str, str] = {}
    try:
        done = await trigger(engine, raw)
    except ParamsError as exc:
        errors = form_errors(exc, raw)
    except (SimulationBusy, queue.QueueFull, queue.QueueUnavailable) as exc:
        errors["form"] = str(exc)
    else:
        return redirect_to(request, f"/jobs/{done.job.id}")
    return html("simulation/form.html", 422, form=echoed(form), errors=errors, embed=is_embed(request),
                **await _page_context(engine))


router = Router(path="/", route_handlers=[simulate_trigger, simulate_status, api_models,
                                          simulations_page, run_form, results_api, results_csv,
                                          equity_csv, health])
WEB = WebSlice(router=router, regions=REGIONS, nav=(NavEntry("Simulations", "/simulations"),))
