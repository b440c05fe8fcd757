"""One Jinja environment for pages, htmx fragments and SSE events alike."""

from __future__ import annotations

import os
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from jobs.caches import BoundedCache
from jobs.engine import job_payload
from jobs.models import Job
from jobs.status import ALL_STATUSES, TERMINAL_STATUSES

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"


def _ago(value: str | datetime | None) -> str:
    if not value:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def with_embed(path: str, embed: bool, **query: Any) -> str:
    params = {k: v for k, v in query.items() if v not in (None, "")}
    if embed:
        params["embed"] = 1
    return f"{path}?{urlencode(params, doseq=True)}" if params else path


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        auto_reload=os.environ.get("MARKETDESK_TEMPLATE_RELOAD") == "1",  # no stat() per include
        autoescape=select_autoescape(["html", "svg"]),
        enable_async=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _ago
    env.filters["duration"] = _duration
    env.globals["link"] = with_embed
    env.globals["STATUSES"] = ALL_STATUSES
    env.globals["TERMINAL"] = {str(s) for s in TERMINAL_STATUSES}
    return env


ENV = make_environment()


# Set while the event hub renders for embedded panels, so links inside live fragments keep
# ?embed=1 (a fragment rendered for a request is told `embed` by its route).
EMBED: ContextVar[bool] = ContextVar("embed", default=False)


def render(template: str, **context: Any) -> str:
    context.setdefault("embed", EMBED.get())
    return ENV.get_template(template).render(**context)


# A finished job's row never changes again: keep its HTML, keyed by job, version and embed mode.
# Lists of jobs are mostly finished jobs, so a page of them costs a lookup per row, not a render.
# (Bounded in age too, and counted on the operations page, like every in-process cache.)
_FINISHED_ROWS: BoundedCache[tuple[str, str, bool], Markup] = BoundedCache(
    "web.finished_rows", maxsize=4096, ttl=3600)
# An unfinished job's row changes with its version (updated_at) too, except its running
# duration: kept a second, so a busy jobs page (every row unfinished while a backlog drains)
# renders each row about once a second instead of once per request.
_UNFINISHED_ROWS: BoundedCache[tuple[str, str, bool], Markup] = BoundedCache(
    "web.unfinished_rows", maxsize=1024, ttl=1.0)
_TERMINAL = frozenset(str(s) for s in TERMINAL_STATUSES)


def _rows_for(status: str) -> BoundedCache[tuple[str, str, bool], Markup]:
    return _FINISHED_ROWS if status in _TERMINAL else _UNFINISHED_ROWS


def kept_row(job_id: str, status: str, updated_at: datetime, embed: bool) -> Markup | None:
    """The row kept for this version of a job, if there is one."""
    return _rows_for(status).get((job_id, updated_at.isoformat(), embed))


def job_row(job: Job | dict[str, Any], embed: bool | None = None) -> Markup:
    """One row of a jobs table (dashboard/job_row.html), for pages and live events alike; of
    a job record or of its payload (``job_payload``, the form events carry)."""
    embed = EMBED.get() if embed is None else bool(embed)
    if isinstance(job, Job):
        status, key = job.status, (job.id, job.updated_at.isoformat(), embed)
    else:
        status, key = job["status"], (job["id"], job["updated_at"], embed)
    kept = _rows_for(status)
    html = kept.get(key)
    if html is None:
        payload = job_payload(job) if isinstance(job, Job) else job
        html = Markup(render("dashboard/job_row.html", job=payload, embed=embed))
        kept[key] = html
    return html


ENV.globals["job_row"] = job_row
