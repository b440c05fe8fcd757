"""Contracts: the /contracts page (selectors, summary counts, the coverage table, the snapshot's
age and timings, a contract's days as a calendar), its live regions on the
``contracts:<EXCHANGE>.<var>`` topic, and the API.

Every answer comes from the stored snapshot at once; a build is enqueued when the snapshot is
missing or stale, or a refresh is asked for, and its result is pushed to the open pages.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from cachetools import LRUCache
from litestar import Response, Router, get, post
from litestar.enums import MediaType, RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body
from litestar.plugins.htmx import HTMXRequest
from litestar.status_codes import HTTP_202_ACCEPTED
from markupsafe import Markup

from jobs import queue
from jobs.contracts import calendar, catalog, lake, service
from jobs.contracts import store as cstore
from jobs.contracts.build import (
    BUILD,
    BUILD_EVENT,
    KIND,
    SNAPSHOT_EVENT,
    build_snapshot,
    check_exchange_var,
    topic_of,
)
from jobs.contracts.settings import contracts_settings
from jobs.contracts.stats import STATUSES, contract_days
from jobs.db import today_utc, utcnow
from jobs.engine import Engine, job_payload
from jobs.events import Event
from jobs.registry import ParamsError
from web.common import errors, html, is_embed, json_response, page
from web.encoded import json_answer
from web.render import render
from web.slice import Message, NavEntry, Region, WebSlice

MODES = ("cache", "compute")
NOT_IN_SNAPSHOT = {404: "The contract is not in its (exchange, var) snapshot, or none is built yet"}


def _pair(exchange: str | None, var: str | None) -> tuple[str, str]:
    """The (exchange, var) asked for, or ParamsError (400) naming the known ones."""
    known = catalog.known()
    if not exchange or exchange not in known:
        raise ParamsError([{"field": "exchange", "message":
                            f"unknown exchange {exchange!r}; known: {', '.join(sorted(known)) or 'none'}"}])
    try:
        return check_exchange_var(exchange, var)
    except ValueError as exc:
        raise ParamsError([{"field": "var", "message": str(exc)}]) from None


def _flag(name: str, value: str | None) -> bool:
    if value in (None, "", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ParamsError([{"field": name, "message": f"{value!r} is not allowed; use 0 or 1"}])


# -- the table: parsed and rendered once per snapshot --------------------------------------------
_TABLES: LRUCache[tuple[str, str, str], tuple[dict[str, Any], Markup]] = LRUCache(maxsize=32)


def snapshot_table(exchange: str, var: str, row: cstore.SnapshotRow | None
                   ) -> tuple[dict[str, Any] | None, Markup | None]:
    """The stored snapshot as data and as the table's HTML (both kept per version)."""
    if row is None or row.built_at is None or row.payload is None:
        return None, None
    key = (exchange, var, row.built_at.isoformat())
    kept = _TABLES.get(key)
    if kept is None:
        snap = json.loads(row.payload)
        kept = snap, Markup(render("contracts/rows.html", contracts=snap["contracts"]))
        _TABLES[key] = kept
    return kept


def _state_context(exchange: str, var: str, row: cstore.SnapshotRow | None, running: Any,
                   ) -> dict[str, Any]:
    summary = (row.summary if row else None) or {}
    job = job_payload(running) if running is not None else None
    return {"exchange": exchange, "var": var, "summary": summary,
            "built_at": row.built_at.isoformat() if row and row.built_at else None,
            "age_s": service.age_of(row.built_at if row else None, utcnow()),
            "ttl_s": contracts_settings().contracts_snapshot_ttl_s,
            "last_error": row.last_error if row else None,
            "last_error_at": row.last_error_at.isoformat() if row and row.last_error_at else None,
            "job": job}


def _table_context(exchange: str, var: str, row: cstore.SnapshotRow | None, running: Any) -> dict[str, Any]:
    snap, rows_html = snapshot_table(exchange, var, row)
    return {"exchange": exchange, "var": var, "snap": snap, "rows_html": rows_html,
            "statuses": STATUSES, "building": running is not None,
            "last_error": row.last_error if row else None}


# -- live regions ------------------------------------------------------------------------------
def _topic_pair(topic: str) -> tuple[str, str]:
    exchange, _, var = topic.split(":", 1)[1].partition(".")
    return exchange, var


def _ended(event: Event | None) -> str | None:
    """The build an event says has ended (its job row may not say so yet)."""
    if event is None:
        return None
    if event.type == SNAPSHOT_EVENT or event.data.get("state") == "cancelled":
        return event.data.get("job_id")
    return None


async def _read(engine: Engine, topic: str, event: Event | None, payload: bool
                ) -> tuple[str, str, cstore.SnapshotRow | None, Any]:
    exchange, var = _topic_pair(topic)
    row, running = await cstore.snapshot_and_build(
        engine.db, exchange, var, BUILD.dedupe_key({"exchange": exchange, "var": var}), payload=payload)
    if running is not None and running.id == _ended(event):
        running = None
    return exchange, var, row, running


async def _state(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    exchange, var, row, running = await _read(engine, topic, event, payload=False)
    return [("contracts-state", render("contracts/state.html",
                                       **_state_context(exchange, var, row, running)))]


async def _table(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    exchange, var, row, running = await _read(engine, topic, event, payload=True)
    return [("contracts-table", render("contracts/table.html",
                                       **_table_context(exchange, var, row, running)))]


REGIONS = (
    # the status line: light, on every build step
    Region("contracts", _state, follows=(BUILD_EVENT, SNAPSHOT_EVENT), keyed=True),
    # the summary and the table of every contract: heavy, coalesced
    Region("contracts", _table, follows=(SNAPSHOT_EVENT,), keyed=True, coalesce=True),
)


# -- the page ----------------------------------------------------------------------------------
@get("/contracts", name="contracts", media_type=MediaType.HTML)
async def contracts_page(request: HTMXRequest, engine: Engine, exchange: str = "SHFE",
                         var: str = "cu") -> Response[str]:
    exchange, var = _pair(exchange, var)
    found = await service.answer(engine, exchange, var, payload=True)
    return page(request, "contracts/page.html", known=catalog.known(), topic=topic_of(exchange, var),
                **(_state_context(exchange, var, found.row, found.running)
                   | _table_context(exchange, var, found.row, found.running)))


@post("/contracts/refresh", name="contracts-refresh", status_code=200, media_type=MediaType.HTML,
      responses=errors(413))
async def refresh_form(request: HTMXRequest, engine: Engine,
                       data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED),
                       ) -> Response[str]:
    """The Refresh button: a build that refreshes the catalog live; the table stays."""
    exchange, var = _pair(data.get("exchange"), data.get("var"))
    found = await service.answer(engine, exchange, var, refresh=True)
    context = _state_context(exchange, var, found.row, found.running)
    if "error" in found.job:
        context["last_error"] = found.job["error"]
    return html("contracts/state.html", embed=is_embed(request), **context)


@get("/contracts/{symbol:str}/days", name="contract-days", media_type=MediaType.HTML,
     responses=errors(404, meaning=NOT_IN_SNAPSHOT))
async def days_fragment(request: HTMXRequest, engine: Engine, symbol: str) -> Response[str]:
    days = await _days(engine, symbol)
    return html("contracts/days.html", embed=is_embed(request), **heatmap(days))


# -- the API -----------------------------------------------------------------------------------
# the body is the stored snapshot as it was encoded: the document says what it holds
@get("/api/contracts", name="api-contracts", responses={200: json_response(
    "The snapshot (contracts, summary) with its age and build job; while none is built yet: "
    "ok false, error contracts_snapshot_building")})
async def api_contracts(request: HTMXRequest, engine: Engine, exchange: str | None = None,
                        var: str | None = None, mode: str = "cache", refresh: str | None = None
                        ) -> Response[Any]:
    """The snapshot of an (exchange, var). mode=cache (default): at once, from the stored
    snapshot (a build is enqueued when it is missing or stale); refresh=1 also enqueues a
    build that refreshes the catalog live. mode=compute builds inline (debugging only)."""
    exchange, var = _pair(exchange, var)
    if mode not in MODES:
        raise ParamsError([{"field": "mode", "message": f"{mode!r} is not allowed; use cache or compute"}])
    wants_refresh = _flag("refresh", refresh)
    if mode == "compute":
        built = await build_snapshot(engine.db, exchange, var, refresh_catalog=wants_refresh)
        await engine.publish((SNAPSHOT_EVENT, (topic_of(exchange, var),), {"ok": True}))
        return Response({**built.payload, "cache_stale": False, "snapshot_age_s": 0.0,
                         "snapshot_job": {"enqueued": False, "job_id": None, "status": None}},
                        media_type=MediaType.JSON)
    found = await service.answer(engine, exchange, var, refresh=wants_refresh)
    return await json_answer(request, *await found.parts(engine))


@post("/api/contracts/build", name="api-contracts-build", status_code=HTTP_202_ACCEPTED,
      responses=errors(413, 429, 503))
async def api_build(engine: Engine, data: dict[str, Any]) -> dict[str, Any]:
    """Start (or join) the build of an (exchange, var): {exchange, var, refresh_catalog?} →
    {job_id, status, enqueued}."""
    job, enqueued = await queue.submit_or_join(engine, KIND, data)
    return {"job_id": job.id, "status": job.status, "enqueued": enqueued}


async def _days(engine: Engine, symbol: str) -> dict[str, Any]:
    m = catalog.SYMBOL_RE.match(symbol)
    if m is None:
        raise ParamsError([{"field": "symbol", "message":
                            f"{symbol!r} is not a contract symbol (e.g. SHFE.cu2501)"}])
    exchange, var = _pair(m["exchange"], m["var"])
    row = await cstore.snapshot(engine.db, exchange, var)
    snap, _ = snapshot_table(exchange, var, row)
    entry = next((c for c in (snap or {}).get("contracts", ()) if c["symbol"] == symbol), None)
    if entry is None:
        raise NotFoundException(f"{symbol} is not in the {exchange} {var} snapshot"
                                + ("" if snap else " (no snapshot yet)"))
    contract = catalog.Contract.from_json(entry)
    try:
        scanned = await lake.scan_lake(engine.db, contracts_settings(), [symbol])
    except lake.LakeError:
        scanned = None
    scan = scanned.scans.get(symbol) if scanned else None
    return {**contract_days(contract, scan, today_utc()), "status": entry["status"],
            "reason": entry["reason"], "open_date": entry["open_date"], "expiry": entry["expiry"]}


@get("/api/contracts/{symbol:str}/days", name="api-contract-days",
     responses=errors(404, meaning=NOT_IN_SNAPSHOT))
async def api_days(engine: Engine, symbol: str) -> dict[str, Any]:
    """One contract's held, missing and no-data days (expected trading days only)."""
    return await _days(engine, symbol)


# -- the calendar heatmap ----------------------------------------------------------------------
CELL, GAP, TOP, LEFT = 11, 2, 16, 26


def heatmap(days: dict[str, Any]) -> dict[str, Any]:
    """Week columns × weekday rows, each day coloured held / missing / no-data / closed."""
    context: dict[str, Any] = {"days": days, "cells": [], "months": [], "w": 0, "h": 0}
    if days["start"] is None:
        return context
    state = {d: "held" for d in days["held"]} | {d: "missing" for d in days["missing"]} | {
        d: "no-data" for d in days["no_data"]}
    start, end = date.fromisoformat(days["start"]), date.fromisoformat(days["end"])
    first_monday = start - timedelta(days=start.weekday())
    day, cells, months = start, [], []
    while day <= end:
        week = (day - first_monday).days // 7
        x, y = LEFT + week * (CELL + GAP), TOP + day.weekday() * (CELL + GAP)
        iso = day.isoformat()
        kind = state.get(iso, "closed" if not calendar.is_trading_day(day) else "missing")
        cells.append({"x": x, "y": y, "date": iso, "state": kind})
        if (day.day == 1 or day == start) and (not months or x - months[-1]["x"] >= 36):
            months.append({"x": x, "label": day.strftime("%b %y")})
        day += timedelta(days=1)
    weeks = (end - first_monday).days // 7 + 1
    context.update(cells=cells, months=months, w=LEFT + weeks * (CELL + GAP), h=TOP + 7 * (CELL + GAP))
    return context


router = Router(path="/", route_handlers=[contracts_page, refresh_form, days_fragment, api_contracts,
                                          api_build, api_days])
WEB = WebSlice(router=router, regions=REGIONS, nav=(NavEntry("Contracts", "/contracts"),))
