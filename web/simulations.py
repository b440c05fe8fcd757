"""Simulations: the trigger and status API, the /simulations page, the job page's grid and chart."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from litestar import Response, Router, get, post
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body
from litestar.plugins.htmx import HTMXRequest
from litestar.status_codes import HTTP_400_BAD_REQUEST
from pydantic import ValidationError

from jobs import queue, store
from jobs.db import today_utc
from jobs.engine import Engine
from jobs.events import Event
from jobs.prices.calendar import trading_days
from jobs.registry import ParamsError, pydantic_errors
from jobs.simulation import catalog, metrics
from jobs.simulation import store as sim_store
from jobs.simulation.job import KIND, SIMULATION_EVENT, SimulationParams, model_days
from jobs.simulation.settings import simulation_settings
from jobs.simulation.trigger import SimulationBusy, trigger
from web.common import FORM_ERRORS, echoed, errors, form_errors, html, is_embed, page, redirect_to
from web.render import render
from web.slice import Message, NavEntry, Region, WebSlice

CHART_W, CHART_H, PAD = 640, 220, 32
COLOURS = ("#2457d6", "#1f8a4c", "#c05621", "#6b46c1", "#c53030", "#2c7a7b", "#b7791f", "#4a5568")


# -- the job page's panels --------------------------------------------------------------------
def _chart(curves: dict[str, list[tuple[date, float]]], initial: dict[str, float]) -> dict[str, Any]:
    """Server-side SVG geometry: one polyline per model over the same date axis."""
    days = sorted({d for curve in curves.values() for d, _ in curve})
    values = [v for curve in curves.values() for _, v in curve] + list(initial.values())
    if not days or not values:
        return {"lines": [], "days": [], "w": CHART_W, "h": CHART_H}
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1
    x_of = {d: PAD + (CHART_W - 2 * PAD) * (i / max(len(days) - 1, 1)) for i, d in enumerate(days)}

    def y(v: float) -> float:
        return round(CHART_H - PAD - (CHART_H - 2 * PAD) * (v - lo) / (hi - lo), 1)

    lines = []
    for i, (model, curve) in enumerate(curves.items()):
        points = " ".join(f"{round(x_of[d], 1)},{y(v)}" for d, v in curve)
        lines.append({"model": model, "points": points, "colour": COLOURS[i % len(COLOURS)],
                      "last": curve[-1][1] if curve else None})
    return {"lines": lines, "days": [days[0], days[-1]], "lo": lo, "hi": hi, "w": CHART_W,
            "h": CHART_H, "pad": PAD}


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


async def results_context(engine: Engine, params: SimulationParams) -> dict[str, Any]:
    known = catalog.load_models()
    specs = {m: known[m] for m in params.models if m in known}
    models = list(specs)
    end = min(params.end_date, today_utc())
    curves = await sim_store.equity_curves(engine.db, models, params.first_day, end)
    trades = await sim_store.trade_counts(engine.db, models, params.first_day, end)
    rows = []
    for model, curve in curves.items():
        spec = specs[model]
        m = metrics.summarize(curve, trades[model], initial_value=spec.initial_cash).to_dict()
        rows.append({"model": model, "title": spec.display_title, **m,
                     "last_value": curve[-1][1] if curve else None})
    return {"chart": _chart(curves, {m: specs[m].initial_cash for m in curves}), "metrics": rows}


async def grid_context(engine: Engine, job: dict[str, Any], params: SimulationParams) -> dict[str, Any]:
    cells = {(d["model"], d["date"]): d["status"]
             for d in await sim_store.details(engine.db, job["id"])}
    per_model = model_days(params)
    days = sorted({d.isoformat() for ds in per_model.values() for d in ds})
    return {"models": params.models, "days": days, "cells": cells, "job_id": job["id"]}


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
    results = await results_context(engine, params)
    return [("sim-chart", render("simulation/chart.html", **results)),
            ("sim-metrics", render("simulation/metrics.html", **results))]


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
                                **await grid_context(engine, job, params)))]


async def _cell(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    d = event.data if event is not None else {}
    return [(f"cell-{d['model']}-{d['day']}",
             render("simulation/cell.html", model=d["model"], day=d["day"], status=d["status"]))]


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
    }


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
                                          simulations_page, run_form])
WEB = WebSlice(router=router, regions=REGIONS, nav=(NavEntry("Simulations", "/simulations"),))
