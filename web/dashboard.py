"""The job dashboard: overview, jobs list, job page, their live fragments and the jobs API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from litestar import Request, Response, Router, get, post
from litestar.exceptions import ValidationException
from litestar.params import Parameter
from litestar.status_codes import HTTP_202_ACCEPTED
from redis.exceptions import RedisError

from jobs import queue, store
from jobs.engine import Engine, job_payload
from jobs.events import Event
from jobs.keys import WORKER_KEY_PREFIX
from jobs.registry import kind_names, load_kinds
from jobs.status import ALL_STATUSES, Status
from web.common import engine_of, html, is_embed, page
from web.events import renderer, snapshot, summary
from web.render import finished_row, job_row, render, with_embed

PAGE_SIZE = 25

# kind -> extra live regions of its job page: async (engine, job payload) -> [(event, html)]
Panel = Callable[[Engine, dict[str, Any]], Awaitable[list[tuple[str, str]]]]
JOB_PANELS: dict[str, Panel] = {}


def job_panel(kind: str) -> Callable[[Panel], Panel]:
    def deco(fn: Panel) -> Panel:
        JOB_PANELS[kind] = fn
        return fn
    return deco


# -- data for the templates -------------------------------------------------------------------
async def overview_context(engine: Engine) -> dict[str, Any]:
    view = await store.overview(engine.db, active_limit=20, recent=5)
    return {"counts": view["counts"],
            **{part: [job_payload(j) for j in view[part]] for part in ("running", "failures", "warned")}}


async def job_context(engine: Engine, job_id: str) -> dict[str, Any] | None:
    found = await store.job_with_logs(engine.db, job_id, limit=200)
    if found is None:
        return None
    job, logs = found
    payload = job_payload(job)
    panel = JOB_PANELS.get(job.kind)
    panels = await panel(engine, payload) if panel else []
    return {"job": payload, "logs": logs, "panels": panels}


def _new_rows_event(kind: str | None, status: str | None, q: str | None, offset: int) -> str | None:
    """The event whose rows (jobs just created) belong at the top of this view of the list:
    a new job is pending, of its kind; a search by id or an older page gets none."""
    if q or offset or status not in (None, "", Status.PENDING.value):
        return None
    return f"job-new-{kind}" if kind else "job-new"


def _check_filters(kind: str | None, status: str | None) -> None:
    if status and status not in ALL_STATUSES:
        raise ValidationException(f"status: {status!r} is not a status; allowed: "
                                  + ", ".join(ALL_STATUSES))
    if kind and kind not in load_kinds():
        raise ValidationException(f"kind: {kind!r} is not a job kind; allowed: "
                                  + ", ".join(kind_names()))


# -- live updates -----------------------------------------------------------------------------
@renderer("job", "jobs")
async def _jobs_topic(event: Event, topic: str, engine: Engine) -> list[tuple[str, str]]:
    row = job_row(event.data)
    out = [(f"job-row-{event.data['id']}", row)]
    if event.data.get("event") == "created":
        out.append(("job-new", row))
        out.append((f"job-new-{event.data['kind']}", row))
    return out


@summary("job", "jobs")
async def _overview(topic: str, engine: Engine) -> list[tuple[str, str]]:
    return [("overview", render("fragments/overview.html", **await overview_context(engine)))]


@snapshot("jobs")
async def _jobs_state(topic: str, engine: Engine) -> list[tuple[str, str]]:
    jobs, _ = await store.list_jobs(engine.db, limit=PAGE_SIZE * 2)
    return [*((f"job-row-{j.id}", job_row(j)) for j in jobs), *await _overview(topic, engine)]


@renderer("job", "job")
async def _job_topic(event: Event, topic: str, engine: Engine) -> list[tuple[str, str]]:
    return [("job-detail", render("fragments/job_detail.html", job=event.data))]


@renderer("log", "job")
async def _log_topic(event: Event, topic: str, engine: Engine) -> list[tuple[str, str]]:
    return [("job-log", render("fragments/log_line.html", line=event.data["line"]))]


@snapshot("job")
async def _job_state(topic: str, engine: Engine) -> list[tuple[str, str]]:
    ctx = await job_context(engine, topic.split(":", 1)[1])
    if ctx is None:
        return []
    return [("job-detail", render("fragments/job_detail.html", job=ctx["job"])),
            ("job-log-all", render("fragments/log.html", logs=ctx["logs"])), *ctx["panels"]]


# -- pages ------------------------------------------------------------------------------------
@get("/", name="overview")
async def overview_page(request: Request[Any, Any, Any]) -> Response[str]:
    return page(request, "pages/overview.html", **await overview_context(engine_of(request)))


@get("/jobs", name="jobs")
async def jobs_page(
    request: Request[Any, Any, Any],
    kind: str | None = None,
    status: str | None = None,
    q: str | None = None,
    offset: Annotated[int, Parameter(ge=0)] = 0,
) -> Response[str]:
    _check_filters(kind, status)
    db, embed = engine_of(request).db, is_embed(request)
    # the page's versions first: finished jobs' rows are kept rendered, only the others are read
    versions, total = await store.list_job_versions(db, kind=kind, status=status, q=q,
                                                    limit=PAGE_SIZE, offset=offset)
    rows = {job_id: finished_row(job_id, updated, embed) for job_id, _, updated in versions}
    for job in await store.get_jobs(db, [job_id for job_id, kept in rows.items() if kept is None]):
        rows[job.id] = job_row(job, embed)
    ctx = {"rows": [row for row in rows.values() if row is not None], "total": total,
           "kind": kind or "",
           "status": status or "", "q": q or "", "offset": offset, "page_size": PAGE_SIZE,
           "kinds": kind_names(), "live_new": _new_rows_event(kind, status, q, offset)}
    if request.headers.get("hx-target") == "jobs-table":
        return html("fragments/jobs_table.html", embed=embed, **ctx)
    return page(request, "pages/jobs.html", **ctx)


@get("/jobs/{job_id:str}", name="job")
async def job_page(request: Request[Any, Any, Any], job_id: str) -> Response[str]:
    ctx = await job_context(engine_of(request), job_id)
    if ctx is None:
        return page(request, "pages/not_found.html", 404, what=f"Job {job_id} not found")
    return page(request, "pages/job.html", **ctx)


@post("/jobs/{job_id:str}/cancel", name="job-cancel-form")
async def cancel_form(request: Request[Any, Any, Any], job_id: str) -> Response[str]:
    engine = engine_of(request)
    try:
        await queue.cancel(engine, job_id)
        notice = ""
    except queue.JobConflict as exc:
        notice = str(exc)
    ctx = await job_context(engine, job_id)
    if ctx is None:
        raise queue.JobNotFound(job_id)
    return html("fragments/job_detail.html", embed=is_embed(request), notice=notice, **ctx)


@post("/jobs/{job_id:str}/retry", name="job-retry-form")
async def retry_form(request: Request[Any, Any, Any], job_id: str) -> Response[str]:
    new = await queue.retry(engine_of(request), job_id)
    target = with_embed(f"/jobs/{new.id}", is_embed(request))
    return Response("", status_code=204, headers={"HX-Redirect": target})


# -- JSON API ---------------------------------------------------------------------------------
@get("/api/jobs", name="api-jobs")
async def api_jobs(
    request: Request[Any, Any, Any],
    kind: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    offset: Annotated[int, Parameter(ge=0)] = 0,
) -> dict[str, Any]:
    _check_filters(kind, status)
    jobs, total = await store.list_jobs(engine_of(request).db, kind=kind, status=status,
                                        limit=limit, offset=offset)
    return {"jobs": [job_payload(j) for j in jobs], "total": total, "limit": limit,
            "offset": offset}


@post("/api/jobs", name="api-submit", status_code=HTTP_202_ACCEPTED)
async def api_submit(request: Request[Any, Any, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Submit a job of any registered kind: {"kind": ..., "params": {...}}."""
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise ValidationException("kind: required; allowed: " + ", ".join(kind_names()))
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise ValidationException("params: must be an object")
    job = await queue.submit(engine_of(request), kind, params)
    return {"job_id": job.id, "status": job.status}


@get("/api/jobs/{job_id:str}", name="api-job")
async def api_job(request: Request[Any, Any, Any], job_id: str) -> dict[str, Any]:
    ctx = await job_context(engine_of(request), job_id)
    if ctx is None:
        raise queue.JobNotFound(job_id)
    return {**ctx["job"], "log": ctx["logs"]}


@post("/api/jobs/{job_id:str}/cancel", name="api-cancel", status_code=200)
async def api_cancel(request: Request[Any, Any, Any], job_id: str) -> dict[str, Any]:
    return job_payload(await queue.cancel(engine_of(request), job_id))


@post("/api/jobs/{job_id:str}/retry", name="api-retry", status_code=HTTP_202_ACCEPTED)
async def api_retry(request: Request[Any, Any, Any], job_id: str) -> dict[str, Any]:
    job = await queue.retry(engine_of(request), job_id)
    return {"job_id": job.id, "status": job.status, "retry_of": job_id}


@get("/healthz", name="healthz")
async def healthz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    engine = engine_of(request)
    out: dict[str, Any] = {"database": "ok", "redis": "ok", "workers": 0}
    try:
        await engine.db.ping()
    except Exception as exc:  # report, don't raise: this is the page that says what is wrong
        out["database"] = f"error: {exc}"
    try:
        await engine.redis.ping()
        out["workers"] = len([k async for k in engine.redis.scan_iter(WORKER_KEY_PREFIX + "*")])
    except (RedisError, OSError) as exc:
        out["redis"] = f"error: {exc}"
    healthy = out["database"] == "ok" and out["redis"] == "ok"
    out["status"] = "ok" if healthy and out["workers"] else ("degraded" if healthy else "error")
    return Response(out, status_code=200 if healthy else 503)


router = Router(path="/", route_handlers=[
    overview_page, jobs_page, job_page, cancel_form, retry_form,
    api_jobs, api_submit, api_job, api_cancel, api_retry, healthz,
])
