"""The engine's own slice: overview, jobs list, job page, their live regions and the jobs API.

A domain adds regions to the job page by declaring them on the ``job`` topic (they render
nothing for jobs of other kinds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, NamedTuple

from litestar import Response, Router, get, post
from litestar.enums import MediaType
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.plugins.htmx import ClientRedirect, HTMXRequest
from litestar.status_codes import HTTP_202_ACCEPTED
from markupsafe import Markup
from redis.exceptions import RedisError
from sqlalchemy import Connection

from jobs import queue, store
from jobs.caches import BoundedCache
from jobs.db import shared_reads
from jobs.engine import Engine, job_payload
from jobs.events import Event
from jobs.keys import WORKER_KEY_PREFIX
from jobs.registry import kind_names, load_kinds
from jobs.status import ALL_STATUSES, Status
from web.common import errors, html, html_response, is_embed, page, redirect_to
from web.render import job_row, kept_row, render
from web.slice import Message, NavEntry, Region, WebSlice, all_regions

PAGE_SIZE = 25
KindFilter = Annotated[str | None, Parameter(schema_extra={"enum": kind_names()},
                                             description="only jobs of this kind")]
StatusFilter = Annotated[str | None, Parameter(schema_extra={"enum": list(ALL_STATUSES)},
                                               description="only jobs in this status")]
# an offset walks every row before the page (a hundred milliseconds at a million jobs): deep
# pages go by ``before``/``after`` instead, which the pager links use
MAX_OFFSET = 10_000
OFFSET_HELP = f"at most {MAX_OFFSET:,}; page further with before=<the last id you got>"
log = logging.getLogger("marketdesk.web")
# A jobs page as it was answered, keyed by the view (database, filters, cursor, embed, fragment)
# and the version of what it shows (its rows' ids, statuses and updated_at, and the total): a
# busy list is asked for many times between two changes of its rows, and answering from here
# skips the rows' lookups and the page's render (two thirds of a GET /jobs). Kept a second at
# most, like an unfinished row (its running duration, the header's health badge).
_PAGES: BoundedCache[tuple[Any, ...], str] = BoundedCache("web.jobs_pages", maxsize=256, ttl=1.0)
# The page around the table (layout, navigation, filter form) of each view: the same for every
# version of the rows, and most of a page's render; kept as long, with the table's place marked
# (a marker escaping would change, so no input can put one in the page)
_SHELLS: BoundedCache[tuple[Any, ...], str] = BoundedCache("web.jobs_shells", maxsize=256, ttl=1.0)
_TABLE_SLOT = Markup("<!--jobs-table-->")


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
    return {"job": job_payload(job), "logs": logs}


async def kind_panels(engine: Engine, job_id: str) -> list[Message]:
    """The job page's regions that domains declared (e.g. a simulation's grid), as they are."""
    topic = f"job:{job_id}"
    out: list[Message] = []
    for region in all_regions():
        if region.topic == "job" and region.on_connect and region not in REGIONS:
            try:
                out.extend(await region.render(engine, topic, None))
            except Exception as exc:  # the page still shows the job, and says what is missing
                log.exception("rendering a panel of %s failed", topic)
                out.append(("panel-error", render("dashboard/panel_error.html",
                                                  reason=f"{type(exc).__name__}: {exc}"[:300])))
    return out


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


# -- live regions -----------------------------------------------------------------------------
async def _job_rows(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    """A job's row wherever a jobs table shows it; a new job at the top of the lists it joins."""
    if event is None:
        jobs, _ = await store.list_jobs(engine.db, limit=PAGE_SIZE * 2)
        return [(f"job-row-{j.id}", job_row(j)) for j in jobs]
    row = job_row(event.data)
    out = [(f"job-row-{event.data['id']}", row)]
    if event.data.get("event") == "created":
        out.append(("job-new", row))
        out.append((f"job-new-{event.data['kind']}", row))
    return out


async def _overview(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    return [("overview", render("dashboard/overview_panel.html", **await overview_context(engine)))]


async def _job_detail(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    if event is not None:
        return [("job-detail", render("dashboard/job_detail.html", job=event.data))]
    job = await store.get_job(engine.db, topic.split(":", 1)[1])
    return [] if job is None else [("job-detail", render("dashboard/job_detail.html",
                                                         job=job_payload(job)))]


async def _job_log(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    if event is not None:
        return [("job-log", render("dashboard/log_line.html", line=event.data["line"]))]
    logs = await store.job_logs(engine.db, topic.split(":", 1)[1], limit=200)
    return [("job-log-all", render("dashboard/log.html", logs=logs))]


REGIONS = (
    Region("jobs", _job_rows, follows=("job",)),
    Region("jobs", _overview, follows=("job",), coalesce=True),
    Region("job", _job_detail, follows=("job",), keyed=True),
    Region("job", _job_log, follows=("log",), keyed=True),
)


# -- pages ------------------------------------------------------------------------------------
@get("/", name="overview", media_type=MediaType.HTML)
async def overview_page(request: HTMXRequest, engine: Engine) -> Response[str]:
    return page(request, "dashboard/overview.html", **await overview_context(engine))


class _JobsView(NamedTuple):
    key: tuple[Any, ...]  # the view and the version of what it shows: a kept answer's key
    answered: str | None  # the kept answer, if there is one
    total: int
    versions: list[tuple[str, str, datetime]]  # the page's rows' (id, status, updated_at)
    more: bool  # a page lies beyond
    rows: list[Markup]  # the page's rows (none when the answer is kept)


@shared_reads
def _jobs_view(conn: Connection, view: tuple[Any, ...], embed: bool, **filters: Any) -> _JobsView:
    """A jobs page's data in one read (one hand-off): its rows' versions and total, which key a
    kept answer; unless that answer is kept, its rows, kept ones as kept and the others read
    whole in the same transaction and rendered."""
    # one row more than the page says whether there is a page beyond it
    versions, total = store.list_job_versions.sync(conn, limit=PAGE_SIZE + 1, **filters)
    key = (*view, total, tuple(versions))
    answered = _PAGES.get(key)
    more = len(versions) > PAGE_SIZE
    if more:
        versions = versions[1:] if filters.get("after") else versions[:PAGE_SIZE]
    if answered is not None:
        return _JobsView(key, answered, total, versions, more, [])
    rows = {job_id: kept_row(job_id, status, updated, embed) for job_id, status, updated in versions}
    if missing := [job_id for job_id, kept in rows.items() if kept is None]:
        for job in store.get_jobs.sync(conn, missing):
            rows[job.id] = job_row(job, embed)
    return _JobsView(key, None, total, versions, more,
                     [row for row in rows.values() if row is not None])


@get("/jobs", name="jobs", media_type=MediaType.HTML)
async def jobs_page(
    request: HTMXRequest,
    engine: Engine,
    kind: KindFilter = None,
    status: StatusFilter = None,
    q: Annotated[str | None, Parameter(max_length=200)] = None,
    offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET, description=OFFSET_HELP)] = 0,
    before: Annotated[str | None, Parameter(max_length=32)] = None,
    after: Annotated[str | None, Parameter(max_length=32)] = None,
) -> Response[str]:
    """Pages go by ``before``/``after`` (the id of the last/first row seen): as fast on the
    thousandth page as on the first; ``offset`` still works for links made by hand."""
    _check_filters(kind, status)
    embed = is_embed(request)
    fragment = bool(request.htmx and request.htmx.target == "jobs-table")
    view = (engine.db.url, fragment, embed, kind, status, q, offset, before, after)
    found = await _jobs_view(engine.db, view, embed, kind=kind, status=status, q=q,
                             offset=offset, before=before, after=after)
    # requests that shared the read share the render too: the first to get here keeps it
    answered = found.answered if found.answered is not None else _PAGES.get(found.key, again=True)
    if answered is not None:
        return Response(answered, media_type=MediaType.HTML)
    versions, more, total = found.versions, found.more, found.total
    first_id = versions[0][0] if versions else None
    last_id = versions[-1][0] if versions else None
    newest_page = (not after and not before and not offset) or (bool(after) and not more)
    ctx = {"rows": found.rows, "total": total,
           "kind": kind or "", "capped": bool(q) and total >= store.SEARCH_COUNT_CAP,
           "status": status or "", "q": q or "", "offset": offset, "page_size": PAGE_SIZE,
           "newer": None if newest_page else first_id,
           "older": last_id if (more if not after else bool(versions)) else None,
           "kinds": kind_names(),
           "live_new": _new_rows_event(kind, status, q, 0 if newest_page else 1)}
    answer = render("dashboard/jobs_table.html", embed=embed, **ctx)
    if not fragment:
        shell = _SHELLS.get_or_set((embed, kind, status, q), lambda: page(
            request, "dashboard/jobs.html", table=_TABLE_SLOT, **ctx).content)
        answer = shell.replace(_TABLE_SLOT, answer, 1)
    _PAGES.set(found.key, answer)
    return Response(answer, media_type=MediaType.HTML)


@get("/jobs/{job_id:str}", name="job", media_type=MediaType.HTML,
     responses={404: html_response("No such job: the page says so")})
async def job_page(request: HTMXRequest, engine: Engine, job_id: str) -> Response[str]:
    ctx = await job_context(engine, job_id)
    if ctx is None:
        return page(request, "not_found.html", 404, what=f"Job {job_id} not found")
    return page(request, "dashboard/job.html", panels=await kind_panels(engine, job_id), **ctx)


@post("/jobs/{job_id:str}/cancel", name="job-cancel-form", status_code=200,
      media_type=MediaType.HTML, responses=errors(404))
async def cancel_form(request: HTMXRequest, engine: Engine, job_id: str) -> Response[str]:
    try:
        await queue.cancel(engine, job_id)
        notice = ""
    except queue.JobConflict as exc:
        notice = str(exc)
    ctx = await job_context(engine, job_id)
    if ctx is None:
        raise queue.JobNotFound(job_id)
    return html("dashboard/job_detail.html", embed=is_embed(request), notice=notice, **ctx)


@post("/jobs/{job_id:str}/retry", name="job-retry-form", status_code=200,
      responses=errors(404, 409, 429, 503))
async def retry_form(request: HTMXRequest, engine: Engine, job_id: str) -> ClientRedirect:
    new = await queue.retry(engine, job_id)
    return redirect_to(request, f"/jobs/{new.id}")


# -- JSON API ---------------------------------------------------------------------------------
@get("/api/jobs", name="api-jobs")
async def api_jobs(
    engine: Engine,
    kind: KindFilter = None,
    status: StatusFilter = None,
    limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET, description=OFFSET_HELP)] = 0,
    before: Annotated[str | None, Parameter(max_length=32)] = None,
) -> dict[str, Any]:
    """Newest first; page with ``before`` (the last id you got), or ``offset``."""
    _check_filters(kind, status)
    jobs, total = await store.list_jobs(engine.db, kind=kind, status=status,
                                        limit=limit, offset=offset, before=before)
    return {"jobs": [job_payload(j) for j in jobs], "total": total, "limit": limit,
            "offset": offset, "next_before": jobs[-1].id if len(jobs) == limit else None}


@dataclass
class SubmitRequest:
    kind: Annotated[str, Parameter(schema_extra={"enum": kind_names()},
                                   description="a registered job kind")]
    params: Annotated[dict[str, Any], Parameter(
        description="the kind's parameters (GET /schema lists each page's form; the API "
                    "answers 400 naming each bad field)")] = field(default_factory=dict)


@post("/api/jobs", name="api-submit", status_code=HTTP_202_ACCEPTED,
      responses=errors(409, 413, 429, 503))
async def api_submit(engine: Engine, data: SubmitRequest) -> dict[str, Any]:
    """Submit a job of any registered kind: {"kind": ..., "params": {...}}; each kind's own
    checks run, as on its own routes."""
    job, enqueued = await queue.submit_or_join(engine, data.kind, data.params or {})
    return {"job_id": job.id, "status": job.status, "enqueued": enqueued}


@get("/api/jobs/{job_id:str}", name="api-job", responses=errors(404))
async def api_job(engine: Engine, job_id: str) -> dict[str, Any]:
    ctx = await job_context(engine, job_id)
    if ctx is None:
        raise queue.JobNotFound(job_id)
    return {**ctx["job"], "log": ctx["logs"]}


@post("/api/jobs/{job_id:str}/cancel", name="api-cancel", status_code=200,
      responses=errors(404, 409))
async def api_cancel(engine: Engine, job_id: str) -> dict[str, Any]:
    return job_payload(await queue.cancel(engine, job_id))


@post("/api/jobs/{job_id:str}/retry", name="api-retry", status_code=HTTP_202_ACCEPTED,
      responses=errors(404, 409, 429, 503))
async def api_retry(engine: Engine, job_id: str) -> dict[str, Any]:
    job = await queue.retry(engine, job_id)
    return {"job_id": job.id, "status": job.status, "retry_of": job_id}


@get("/healthz", name="healthz", responses={503: ResponseSpec(
    data_container=dict[str, Any], description="The database or Redis is unreachable",
    generate_examples=False)})
async def healthz(engine: Engine) -> Response[dict[str, Any]]:
    out: dict[str, Any] = {"database": "ok", "redis": "ok", "workers": 0}
    try:
        await engine.db.ping()
    except Exception as exc:  # report, don't raise: this is the page that says what is wrong
        log.warning("health: database unreachable: %s", exc)
        out["database"] = f"error: unreachable ({type(exc).__name__})"
    try:
        await engine.redis.ping()
        out["workers"] = len([k async for k in engine.redis.scan_iter(WORKER_KEY_PREFIX + "*")])
    except (RedisError, OSError) as exc:
        log.warning("health: Redis unreachable: %s", exc)  # its address stays in the log
        out["redis"] = f"error: unreachable ({type(exc).__name__})"
    healthy = out["database"] == "ok" and out["redis"] == "ok"
    out["status"] = "ok" if healthy and out["workers"] else ("degraded" if healthy else "error")
    return Response(out, status_code=200 if healthy else 503)


router = Router(path="/", route_handlers=[
    overview_page, jobs_page, job_page, cancel_form, retry_form,
    api_jobs, api_submit, api_job, api_cancel, api_retry, healthz,
])

WEB = WebSlice(router=router, regions=REGIONS,
               nav=(NavEntry("Overview", "/"), NavEntry("Jobs", "/jobs")))
