"""Pieces every route module shares: HTML responses, the engine as a dependency, htmx
redirects, form errors, error mapping."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.di import Provide
from litestar.enums import MediaType
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.htmx import ClientRedirect, HTMXRequest
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import Scope

from jobs.engine import Engine
from jobs.queue import JobBusy, JobConflict, JobNotFound, QueueFull, QueueUnavailable
from jobs.registry import ParamsError
from web.render import render, with_embed

log = logging.getLogger("marketdesk.web")


# -- what the OpenAPI document says of answers other than the handler's own ---------------------
@dataclass
class FieldError:
    field: str
    message: str


@dataclass
class ErrorBody:
    """Every JSON error: the status, a sentence naming the field and what is allowed, and the
    fields one by one where there are several."""

    status_code: int
    detail: str
    errors: list[FieldError] | None = None
    job_status: str | None = None


_MEANING = {
    400: "Bad input: the detail names the field and what is allowed",
    404: "No such job",
    409: "The job's state does not allow it, or a job of an exclusive kind is unfinished",
    413: "Request body too large (MARKETDESK_MAX_BODY_BYTES)",
    429: "Job queue full (MARKETDESK_MAX_QUEUED); try again later",
    503: "A part the service needs (Redis) is unreachable; try again (see Retry-After)",
}


def errors(*codes: int, meaning: dict[int, str] | None = None) -> dict[int, ResponseSpec]:
    """The error answers a handler can give besides its own, for its OpenAPI operation;
    ``meaning`` words one for this handler (e.g. ``{404: "No such symbol"}``)."""
    said = {**_MEANING, **(meaning or {})}
    return {code: ResponseSpec(data_container=ErrorBody, description=said[code],
                               generate_examples=False) for code in codes}


def json_response(description: str, data_container: Any = dict[str, Any]) -> ResponseSpec:
    """A JSON answer of the handler's other than its own status's (or its own, where the
    handler hands over bytes already encoded), described by ``data_container``."""
    return ResponseSpec(data_container=data_container, description=description,
                        generate_examples=False)


def html_response(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=str, description=description, media_type=MediaType.HTML,
                        generate_examples=False)


# a refused form comes back as HTML with its errors beside their fields
FORM_ERRORS = {422: html_response("The form again, each error beside its field")}


class AppRequest(HTMXRequest):
    """The request every handler gets: htmx's, with a JSON body nested too deep for the decoder
    answered as the client's mistake (a 400 naming the body) rather than our 500."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            raise ValidationException(
                f"body: JSON nested deeper than the decoder allows; keep it under {MAX_DEPTH} "
                "levels") from None


MAX_DEPTH = 32  # nesting any request of ours needs is a handful of levels


def _engine(scope: Scope) -> Engine:
    # from the scope, not ``state: State``: Litestar would build a State object per request
    return scope["litestar_app"].state.engine  # type: ignore[no-any-return]


# every handler that names an ``engine: Engine`` parameter gets the process's engine
DEPENDENCIES = {"engine": Provide(_engine, sync_to_thread=False)}


def is_embed(request: HTMXRequest) -> bool:
    """?embed=1 on the request, or on the page an htmx request comes from (HX-Current-URL)."""
    if request.query_params.get("embed") in ("1", "true", "yes"):
        return True
    current = (request.htmx.current_url if request.htmx else None) or ""
    return "embed=1" in current.partition("?")[2].split("&")


def redirect_to(request: HTMXRequest, path: str) -> ClientRedirect:
    """After a form's success: htmx navigates to ``path`` (keeping an embedded panel embedded)."""
    response = ClientRedirect(with_embed(path, is_embed(request)))
    response.status_code = 200  # what htmx expects; a POST handler's default would be 201
    return response


def form_errors(exc: ParamsError, fields: Any) -> dict[str, str]:
    """A ParamsError as {form field: message}, the first message per field; errors of fields
    the form does not show go under "form"."""
    errors: dict[str, str] = {}
    for err in exc.errors:
        field = err["field"].split(".")[0]
        errors.setdefault(field if field in fields else "form", err["message"])
    return errors


MAX_ECHO = 2000


def echoed(form: dict[str, Any]) -> dict[str, Any]:
    """A refused form's values as it is shown again: each cut to ``MAX_ECHO`` characters (no
    field of ours is valid longer), so oversized input comes back as an excerpt."""
    def cut(v: Any) -> Any:
        if isinstance(v, str):
            return v[:MAX_ECHO]
        if isinstance(v, list):
            return [cut(x) for x in v[:200]]
        return v
    return {k: cut(v) for k, v in form.items()}


def html(template: str, status_code: int = 200, headers: dict[str, str] | None = None,
         **context: Any) -> Response[str]:
    return Response(render(template, **context), status_code=status_code,
                    media_type=MediaType.HTML, headers=headers)


def page(request: HTMXRequest, template: str, status_code: int = 200,
         **context: Any) -> Response[str]:
    """A whole page, or the same page as an embeddable panel with ?embed=1."""
    embed = is_embed(request)
    return html(template, status_code, embed=embed, layout="embed.html" if embed else "base.html",
                path=request.url.path, **context)


MAX_MESSAGE = 300


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    """An error message cut to ``limit`` characters: bad input is echoed as an excerpt."""
    return text if len(text) <= limit else text[:limit] + "…"


def _json_error(status: int, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    return Response({"status_code": status, "detail": detail, **extra}, status_code=status,
                    media_type=MediaType.JSON)


def params_error(_: Request[Any, Any, Any], exc: ParamsError) -> Response[dict[str, Any]]:
    return _json_error(HTTP_400_BAD_REQUEST, str(exc), errors=exc.errors)


def queue_full(_: Request[Any, Any, Any], exc: QueueFull) -> Response[dict[str, Any]]:
    return _json_error(HTTP_429_TOO_MANY_REQUESTS, str(exc))


def queue_unavailable(_: Request[Any, Any, Any], exc: QueueUnavailable) -> Response[dict[str, Any]]:
    response = _json_error(HTTP_503_SERVICE_UNAVAILABLE, str(exc))
    response.headers["Retry-After"] = "5"
    return response


def not_found(_: Request[Any, Any, Any], exc: JobNotFound) -> Response[dict[str, Any]]:
    return _json_error(HTTP_404_NOT_FOUND, str(exc))


def conflict(_: Request[Any, Any, Any], exc: JobConflict) -> Response[dict[str, Any]]:
    return _json_error(HTTP_409_CONFLICT, str(exc), job_status=exc.status)


def busy(_: Request[Any, Any, Any], exc: JobBusy) -> Response[dict[str, Any]]:
    return _json_error(HTTP_409_CONFLICT, str(exc))


_MISSING = re.compile(r"Object missing required field `([^`]+)`")


def _named(field_name: str, message: str) -> dict[str, str]:
    """A missing body field named as the field itself (msgspec reports it on ``data``)."""
    missing = _MISSING.fullmatch(message)
    if missing:
        return {"field": missing[1], "message": "required"}
    return {"field": field_name, "message": message}


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    errors = [_named(bounded(str(e.get("key") or e.get("source") or "body"), 100),
                     bounded(str(e.get("message"))))
              for e in extra[:20] if isinstance(e, dict)]
    detail = bounded(str(exc.detail))
    if errors and detail.startswith("Validation failed"):
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return _json_error(HTTP_400_BAD_REQUEST, detail, errors=errors)


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    response = _json_error(exc.status_code, bounded(str(exc.detail)))
    if exc.headers:  # a 405's Allow, a 503's Retry-After
        response.headers.update(exc.headers)
    return response


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Only what nothing else handles is logged (with its traceback): an answered 4xx is not an
    error of ours, and logging each one would bury the real ones (and cost the request path)."""
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _json_error(HTTP_500_INTERNAL_SERVER_ERROR,
                       f"Internal error ({type(exc).__name__}); it is in the server's log.")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ParamsError: params_error,
    QueueFull: queue_full,
    QueueUnavailable: queue_unavailable,
    JobNotFound: not_found,
    JobConflict: conflict,
    JobBusy: busy,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: internal_error,
}
