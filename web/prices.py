"""Price data: the /prices page (coverage and download form), its live coverage, the API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.status_codes import HTTP_202_ACCEPTED
from pydantic import ValidationError

from jobs import queue, store
from jobs.engine import Engine
from jobs.events import Event
from jobs.prices import store as prices_store
from jobs.prices.download import DownloadParams, today_utc
from jobs.prices.providers import PROVIDER_NAMES
from jobs.registry import ParamsError, get_kind, pydantic_errors, validate_params
from jobs.settings import get_settings
from web.common import engine_of, html, is_embed, page
from web.events import renderer, snapshot
from web.render import render, with_embed

KIND = "prices.download"


async def coverage_context(engine: Engine) -> dict[str, Any]:
    rows = await prices_store.coverage(engine.db)
    return {"coverage": [c.to_api() for c in rows]}


def form_defaults() -> dict[str, Any]:
    end = today_utc()
    return {"symbols": "", "start_date": (end - timedelta(days=30)).isoformat(),
            "end_date": end.isoformat(), "provider": get_settings().default_provider}


@renderer("prices", "prices")
@renderer("job", "prices")
async def _coverage_topic(event: Event, topic: str, engine: Engine) -> list[tuple[str, str]]:
    return [("coverage", render("fragments/coverage.html", **await coverage_context(engine)))]


@snapshot("prices")
async def _coverage_state(topic: str, engine: Engine) -> list[tuple[str, str]]:
    return await _coverage_topic(Event("", "prices", (topic,), {}), topic, engine)


@get("/prices", name="prices")
async def prices_page(request: Request[Any, Any, Any]) -> Response[str]:
    engine = engine_of(request)
    recent, _ = await store.list_jobs(engine.db, kind=KIND, limit=10)
    return page(request, "pages/prices.html", form=form_defaults(), errors={},
                providers=PROVIDER_NAMES, recent=recent,
                **await coverage_context(engine))


@post("/prices/download", name="prices-download-form")
async def download_form(
    request: Request[Any, Any, Any],
    data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),
) -> Response[str]:
    """The download form: inline errors beside their fields, or on to the new job's page."""
    form = {**form_defaults(), **{k: (v or "").strip() for k, v in data.items()}}
    raw = {"symbols": form["symbols"], "start_date": form["start_date"],
           "end_date": form["end_date"], "provider": form.get("provider") or None}
    errors: dict[str, str] = {}
    try:
        params = validate_params(get_kind(KIND), raw)
        job = await queue.submit(engine_of(request), KIND, params, validated=True)
    except ParamsError as exc:
        for err in exc.errors:
            field = err["field"].split(".")[0]
            errors.setdefault(field if field in raw else "form", err["message"])
    except (queue.QueueFull, queue.QueueUnavailable) as exc:
        errors["form"] = str(exc)
    else:
        target = with_embed(f"/jobs/{job.id}", is_embed(request))
        return Response("", status_code=204, headers={"HX-Redirect": target})
    return html("fragments/download_form.html", 422, form=form, errors=errors,
                providers=PROVIDER_NAMES, embed=is_embed(request))


@post("/api/prices/download", name="api-prices-download", status_code=HTTP_202_ACCEPTED)
async def api_download(request: Request[Any, Any, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Start a download: {symbols, start_date, end_date, provider?} → {job_id, status}."""
    job = await queue.submit(engine_of(request), KIND, data)
    return {"job_id": job.id, "status": job.status}


@get("/api/prices/coverage", name="api-prices-coverage")
async def api_coverage(request: Request[Any, Any, Any], symbols: str | None = None
                       ) -> dict[str, Any]:
    wanted = None
    if symbols:
        try:
            wanted = DownloadParams.model_validate(
                {"symbols": symbols, "start_date": "2000-01-03", "end_date": "2000-01-03"}).symbols
        except ValidationError as exc:  # a bad ticker is the caller's mistake: 400, not 500
            raise ParamsError([e for e in pydantic_errors(exc) if e["field"] == "symbols"]) from None
    rows = await prices_store.coverage(engine_of(request).db, wanted)
    return {"coverage": [c.to_api() for c in rows]}


router = Router(path="/", route_handlers=[prices_page, download_form, api_download, api_coverage])
