"""Price data: the /prices page (coverage, download form, recent downloads), its live regions, the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from litestar import Response, Router, get, post
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body, Parameter
from litestar.plugins.htmx import HTMXRequest
from litestar.status_codes import HTTP_202_ACCEPTED
from pydantic import ValidationError

from jobs import queue, store
from jobs.db import today_utc
from jobs.engine import Engine
from jobs.events import Event
from jobs.prices import store as prices_store
from jobs.prices.download import DOWNLOAD, PRICES_TOPIC, DownloadParams
from jobs.prices.providers import PROVIDER_NAMES
from jobs.prices.settings import prices_settings
from jobs.registry import ParamsError, pydantic_errors, validate_params
from web.common import FORM_ERRORS, echoed, errors, form_errors, html, is_embed, page, redirect_to
from web.render import render
from web.slice import Message, NavEntry, Region, WebSlice

KIND = DOWNLOAD.name


COVERAGE_PAGE = 100


async def coverage_context(engine: Engine, offset: int = 0) -> dict[str, Any]:
    """A page of the coverage table (kept up to date as bars are stored: no scan of the bars)."""
    rows = await prices_store.coverage(engine.db, limit=COVERAGE_PAGE, offset=offset)
    return {"coverage": [c.to_api() for c in rows],
            "symbols_total": await prices_store.symbols_held(engine.db),
            "coverage_offset": offset, "coverage_page": COVERAGE_PAGE}


def form_defaults() -> dict[str, Any]:
    end = today_utc()
    return {"symbols": "", "start_date": (end - timedelta(days=30)).isoformat(),
            "end_date": end.isoformat(), "provider": prices_settings().default_provider}


async def _coverage(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    return [("coverage", render("prices/coverage.html", **await coverage_context(engine)))]


REGIONS = (
    # a GROUP BY over every stored bar: coalesced, not rerun for each downloaded symbol
    Region(PRICES_TOPIC, _coverage, follows=("prices", "job"), coalesce=True),
)


@get("/prices", name="prices", media_type=MediaType.HTML)
async def prices_page(request: HTMXRequest, engine: Engine,
                      offset: Annotated[int, Parameter(ge=0, le=10**9)] = 0) -> Response[str]:
    """The page; ``offset`` pages the coverage table (COVERAGE_PAGE symbols a page)."""
    if request.htmx and request.htmx.target == "coverage":
        return html("prices/coverage.html", embed=is_embed(request),
                    **await coverage_context(engine, offset))
    recent, _ = await store.list_jobs(engine.db, kind=KIND, limit=10)
    return page(request, "prices/page.html", form=form_defaults(), errors={},
                providers=PROVIDER_NAMES, recent=recent, kind=KIND,
                **await coverage_context(engine, offset))


@post("/prices/download", name="prices-download-form", status_code=200,
      media_type=MediaType.HTML, responses=FORM_ERRORS)
async def download_form(
    request: HTMXRequest,
    engine: Engine,
    data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),
) -> Response[Any]:
    """The download form: inline errors beside their fields, or on to the new job's page."""
    form = {**form_defaults(), **{k: (v or "").strip() for k, v in data.items()}}
    raw = {"symbols": form["symbols"], "start_date": form["start_date"],
           "end_date": form["end_date"], "provider": form.get("provider") or None}
    errors: dict[str, str] = {}
    try:
        params = validate_params(DOWNLOAD, raw)
        job = await queue.submit(engine, KIND, params, validated=True)
    except ParamsError as exc:
        errors = form_errors(exc, raw)
    except (queue.QueueFull, queue.QueueUnavailable) as exc:
        errors["form"] = str(exc)
    else:
        return redirect_to(request, f"/jobs/{job.id}")
    return html("prices/download_form.html", 422, form=echoed(form), errors=errors,
                providers=PROVIDER_NAMES, embed=is_embed(request))


@post("/api/prices/download", name="api-prices-download", status_code=HTTP_202_ACCEPTED,
      responses=errors(409, 413, 429, 503))
async def api_download(engine: Engine, data: dict[str, Any]) -> dict[str, Any]:
    """Start a download: {symbols, start_date, end_date, provider?} → {job_id, status}."""
    job = await queue.submit(engine, KIND, data)
    return {"job_id": job.id, "status": job.status}


@get("/api/prices/coverage", name="api-prices-coverage")
async def api_coverage(engine: Engine, symbols: str | None = None,
                       limit: Annotated[int, Parameter(ge=1, le=5000)] = COVERAGE_PAGE,
                       offset: Annotated[int, Parameter(ge=0, le=10**9)] = 0) -> dict[str, Any]:
    """Coverage of the given ``symbols``, or a page of every symbol held (by name)."""
    wanted = None
    if symbols:
        try:
            wanted = DownloadParams.model_validate(
                {"symbols": symbols, "start_date": "2000-01-03", "end_date": "2000-01-03"}).symbols
        except ValidationError as exc:  # a bad ticker is the caller's mistake: 400, not 500
            raise ParamsError([e for e in pydantic_errors(exc) if e["field"] == "symbols"]) from None
    if wanted is not None:
        rows = await prices_store.coverage(engine.db, wanted)
        return {"coverage": [c.to_api() for c in rows], "total": len(rows)}
    rows = await prices_store.coverage(engine.db, limit=limit, offset=offset)
    return {"coverage": [c.to_api() for c in rows], "total": await prices_store.symbols_held(engine.db),
            "limit": limit, "offset": offset}


router = Router(path="/", route_handlers=[prices_page, download_form, api_download, api_coverage])
WEB = WebSlice(router=router, regions=REGIONS, nav=(NavEntry("Prices", "/prices"),))
