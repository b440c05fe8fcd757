"""Tracked symbols: the /symbols board (cards with levels over a sparkline, staleness, refresh),
its live regions on the ``symbols`` topic, and the API."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from litestar import Response, Router, delete, get, patch, post
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body
from litestar.plugins.htmx import HTMXRequest
from litestar.serialization import encode_json
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_500_INTERNAL_SERVER_ERROR,
)
from sqlalchemy.exc import IntegrityError

from jobs import queue
from jobs import store as jobs_store
from jobs.db import utcnow
from jobs.engine import Engine
from jobs.events import Event
from jobs.models import Job
from jobs.prices import store as prices_store
from jobs.prices.providers import SYMBOL_RE
from jobs.registry import ParamsError
from jobs.status import TERMINAL_STATUSES, Status
from jobs.symbols import store
from jobs.symbols.refresh import (
    BOARD_EVENT,
    CARD_EVENT,
    REFRESH,
    REFRESH_ALL,
    SYMBOLS_TOPIC,
    board_event,
    card_event,
    window,
)
from jobs.symbols.settings import symbols_settings
from jobs.symbols.staleness import calculate_staleness, next_change, relative, threshold_hours
from web.common import FORM_ERRORS, errors, html, is_embed, json_response, page
from web.encoded import json_answer
from web.render import render
from web.slice import Message, NavEntry, Region, WebSlice

MAX_WAIT = 30.0
SPARK_W, SPARK_H, SPARK_PAD = 240, 72, 4
SPARK_DAYS = 180  # calendar days of closes under a card's levels


def normalize(symbol: str) -> str:
    return symbol.strip().upper()


def _threshold_api() -> float | int:
    hours = threshold_hours()
    return int(hours) if float(hours).is_integer() else hours


def symbol_api(state: dict[str, Any], now: Any = None, threshold: float | None = None) -> dict[str, Any]:
    """A tracked symbol as the API lists it; staleness computed now."""
    last = state["last_updated"]
    return {"symbol": state["symbol"], "direction": state["direction"],
            "last_updated": last.isoformat() if last else None, "level_count": state["level_count"],
            **calculate_staleness(last, now, threshold)}


def _bad_symbol(raw: Any) -> ParamsError | None:
    if not isinstance(raw, str) or not raw.strip():
        return ParamsError([{"field": "symbol", "message": 'required: one ticker (e.g. "SPX")'}])
    if not SYMBOL_RE.fullmatch(normalize(raw)):
        return ParamsError([{"field": "symbol", "message":
                             f"{raw!r} is not a ticker: use 1-10 letters or digits, with '.' or '-' "
                             "allowed after the first (e.g. SPX, BRK.B)"}])
    return None


def _error(status: int, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    return Response({"status_code": status, "detail": detail, **extra}, status_code=status,
                    media_type=MediaType.JSON)


def _not_found() -> Response[dict[str, Any]]:
    return _error(HTTP_404_NOT_FOUND, "Symbol not found")


# -- what the API's answers hold, for the OpenAPI document ---------------------------------------
class TrackedSymbol(TypedDict):
    symbol: str
    direction: str
    last_updated: str | None
    level_count: int
    is_stale: bool
    hours_since_update: float | None
    staleness_message: str | None


class SymbolList(TypedDict):
    symbols: list[TrackedSymbol]
    count: int
    staleness_threshold_hours: float


class Level(TypedDict):
    id: int
    kind: str
    price: float
    strength: int
    first_touch: str
    last_touch: str
    created_at: str


class SymbolDetail(TrackedSymbol):
    version: int
    levels: list[Level]


class LevelEdited(TypedDict):
    symbol: str
    version: int
    level: Level


NO_SYMBOL = {404: "No such symbol"}
# a refresh already pending or running (status "already_refreshing"), or, with ?wait, the one
# started that finished in time
REFRESH_200 = {200: json_response("Already refreshing (status already_refreshing, its job_id); with "
                                  "?wait, the refresh finished in time (its status and result)")}


# -- the board ----------------------------------------------------------------------------------
def sparkline(closes: list[tuple[Any, float]], levels: list[dict[str, Any]]) -> dict[str, Any]:
    """Server-side SVG geometry: the closes as a polyline, the levels inside their range as lines."""
    if len(closes) < 2:
        return {"points": "", "levels": [], "w": SPARK_W, "h": SPARK_H}
    values = [v for _, v in closes]
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1
    step = (SPARK_W - 2 * SPARK_PAD) / (len(values) - 1)

    def y(v: float) -> float:
        return round(SPARK_H - SPARK_PAD - (SPARK_H - 2 * SPARK_PAD) * (v - lo) / (hi - lo), 1)

    points = " ".join(f"{round(SPARK_PAD + i * step, 1)},{y(v)}" for i, v in enumerate(values))
    lines = [{"y": y(lv["price"]), "kind": lv["kind"], "price": lv["price"]}
             for lv in levels if lo <= lv["price"] <= hi]
    return {"points": points, "levels": lines, "w": SPARK_W, "h": SPARK_H, "lo": lo, "hi": hi}


async def _cards(engine: Engine, states: list[dict[str, Any]], refreshing: set[str]
                 ) -> list[dict[str, Any]]:
    names = [s["symbol"] for s in states]
    _, end = window()
    closes = await prices_store.closes(engine.db, names, end - timedelta(days=SPARK_DAYS), end)
    levels = await store.levels_of(engine.db, names)
    now, threshold = utcnow(), threshold_hours()
    return [{**symbol_api(s, now, threshold), "version": s["version"], "levels": levels[s["symbol"]],
             "ago": relative(s["last_updated"], now), "refreshing": s["symbol"] in refreshing,
             "spark": sparkline(closes[s["symbol"]], levels[s["symbol"]])} for s in states]


async def board_context(engine: Engine) -> dict[str, Any]:
    states, refreshing, everything = await store.board(engine.db)
    cards = await _cards(engine, states, refreshing)
    return {"cards": cards, "refreshing_all": everything, "threshold": _threshold_api(),
            "stale_count": sum(1 for c in cards if c["is_stale"])}


async def card_html(engine: Engine, symbol: str, note: str | None = None) -> str | None:
    state = await store.get_symbol(engine.db, symbol)
    if state is None:
        return None
    refreshing, _ = await store.refreshing(engine.db)
    card = (await _cards(engine, [state], refreshing))[0]
    return render("symbols/card.html", s=card, note=note)


async def toolbar_html(engine: Engine, note: str | None = None) -> str:
    return render("symbols/toolbar.html", note=note, **await board_context(engine))


async def _board(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    return [("symbols-board", render("symbols/board.html", **await board_context(engine)))]


async def _card(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    """A card that changed (refreshed, turned stale, a refresh started or ended); the toolbar
    when a refresh of everything ended."""
    if event is None:
        return []
    if event.type == CARD_EVENT:
        symbol = str(event.data.get("symbol"))
    elif event.data.get("kind") == REFRESH.name:
        symbol = str((event.data.get("params") or {}).get("symbol"))
    elif event.data.get("kind") == REFRESH_ALL.name:
        return [("symbols-toolbar", await toolbar_html(engine))]
    else:
        return []
    markup = await card_html(engine, symbol)
    return [] if markup is None else [(f"symbol-{symbol}", markup)]


REGIONS = (
    # the whole board (every card's sparkline): coalesced
    Region(SYMBOLS_TOPIC, _board, follows=(BOARD_EVENT,), coalesce=True),
    Region(SYMBOLS_TOPIC, _card, follows=(CARD_EVENT, "job"), on_connect=False),
)


@get("/symbols", name="symbols", media_type=MediaType.HTML)
async def symbols_page(request: HTMXRequest, engine: Engine) -> Response[str]:
    return page(request, "symbols/page.html", form={"symbol": ""}, errors={},
                **await board_context(engine))


@post("/symbols/add", name="symbols-add-form", status_code=HTTP_200_OK, media_type=MediaType.HTML,
      responses=FORM_ERRORS)
async def add_form(request: HTMXRequest, engine: Engine,
                   data: dict[str, str] = Body(media_type=RequestEncodingType.URL_ENCODED)
                   ) -> Response[str]:
    raw = (data.get("symbol") or "").strip()
    bad = _bad_symbol(raw)
    if bad is not None:
        return html("symbols/add_form.html", 422, form={"symbol": raw},
                    errors={"symbol": bad.errors[0]["message"]}, embed=is_embed(request))
    symbol = normalize(raw)
    if not await store.add_symbol(engine.db, symbol):
        return html("symbols/add_form.html", 422, form={"symbol": raw},
                    errors={"symbol": f"{symbol} is already tracked"}, embed=is_embed(request))
    await engine.publish(board_event())
    return html("symbols/add_form.html", form={"symbol": ""}, errors={}, added=symbol,
                embed=is_embed(request))


@post("/symbols/{symbol:str}/remove", name="symbols-remove-form", status_code=HTTP_200_OK,
      media_type=MediaType.HTML)
async def remove_form(engine: Engine, symbol: str) -> Response[str]:
    await store.remove_symbol(engine.db, normalize(symbol))
    await engine.publish(board_event())
    return Response("", media_type=MediaType.HTML)


@post("/symbols/{symbol:str}/refresh", name="symbols-refresh-form", status_code=HTTP_200_OK,
      media_type=MediaType.HTML)
async def refresh_form(engine: Engine, symbol: str) -> Response[str]:
    """The card's Refresh button: the card again, disabled while its refresh runs."""
    symbol = normalize(symbol)
    if await store.version_of(engine.db, symbol) is None:
        return Response("", media_type=MediaType.HTML)  # removed meanwhile: the card goes
    note = None
    try:
        _, enqueued = await queue.submit_or_join(engine, REFRESH.name, {"symbol": symbol})
    except (queue.QueueFull, queue.QueueUnavailable) as exc:
        note = str(exc)
    else:
        if enqueued:
            await engine.publish(card_event(symbol))
        else:
            note = "Already refreshing"
    return Response(await card_html(engine, symbol, note) or "", media_type=MediaType.HTML)


@post("/symbols/refresh-all", name="symbols-refresh-all-form", status_code=HTTP_200_OK,
      media_type=MediaType.HTML)
async def refresh_all_form(engine: Engine) -> Response[str]:
    note = None
    try:
        _, enqueued = await queue.submit_or_join(engine, REFRESH_ALL.name, {})
    except (queue.QueueFull, queue.QueueUnavailable) as exc:
        note = str(exc)
    else:
        note = None if enqueued else "Already refreshing"
    return Response(await toolbar_html(engine, note), media_type=MediaType.HTML)


# -- API ------------------------------------------------------------------------------------------
@dataclass
class _Listed:
    """The last body GET /api/symbols built: good while the symbols' fingerprint is the same
    and the clock has not reached the first moment a computed field could change."""

    key: tuple[Any, ...]
    until: datetime | None
    body: bytes


_listed: _Listed | None = None


async def _list_body(engine: Engine) -> bytes:
    global _listed
    now, threshold = utcnow(), threshold_hours()
    cache = symbols_settings().symbol_list_cache
    if cache:
        key = (engine.db.url, threshold, *await store.fingerprint(engine.db))
        hit = _listed
        if hit is not None and hit.key == key and (hit.until is None or now < hit.until):
            return hit.body
    states = await store.list_symbols(engine.db)
    symbols = [symbol_api(s, now, threshold) for s in states]
    body = encode_json({"symbols": symbols, "count": len(symbols),
                        "staleness_threshold_hours": _threshold_api()})
    if cache:
        changes = [t for s in states if (t := next_change(s["last_updated"], now, threshold))]
        _listed = _Listed(key, min(changes, default=None), body)
    return body


# the body is encoded ahead (and kept): the document says what it holds
@get("/api/symbols", name="api-symbols",
     responses={200: json_response("Every tracked symbol", SymbolList)})
async def api_symbols(request: HTMXRequest, engine: Engine) -> Response[bytes]:
    """Every tracked symbol with its staleness as of now:
    {symbols: [...], count, staleness_threshold_hours}."""
    return await json_answer(request, await _list_body(engine))


@get("/api/symbols/{symbol:str}", name="api-symbol", responses=errors(404, meaning=NO_SYMBOL))
async def api_symbol(engine: Engine, symbol: str) -> Response[SymbolDetail]:
    state = await store.get_symbol(engine.db, normalize(symbol))
    if state is None:
        return _not_found()
    return Response({**symbol_api(state), "version": state["version"], "levels": state["levels"]})


@post("/api/symbols", name="api-symbols-add", status_code=HTTP_201_CREATED,
      responses=errors(409, 413, meaning={409: "The symbol is already tracked"}))
async def api_add(engine: Engine, data: dict[str, Any]) -> Response[SymbolDetail]:
    bad = _bad_symbol(data.get("symbol"))
    if bad is not None:
        raise bad
    symbol = normalize(data["symbol"])
    if not await store.add_symbol(engine.db, symbol):
        return _error(HTTP_409_CONFLICT, f"symbol: {symbol} is already tracked",
                      errors=[{"field": "symbol", "message": f"{symbol} is already tracked"}])
    await engine.publish(board_event())
    state = await store.get_symbol(engine.db, symbol)
    assert state is not None
    return Response({**symbol_api(state), "version": state["version"], "levels": []},
                    status_code=HTTP_201_CREATED)


@delete("/api/symbols/{symbol:str}", name="api-symbols-remove", status_code=HTTP_200_OK,
        responses=errors(404, meaning=NO_SYMBOL))
async def api_remove(engine: Engine, symbol: str) -> Response[dict[str, Any]]:
    symbol = normalize(symbol)
    if not await store.remove_symbol(engine.db, symbol):
        return _not_found()
    await engine.publish(board_event())
    return Response({"symbol": symbol, "status": "removed"})


def _wait_seconds(wait: float | None) -> float:
    if wait is None:
        return 0.0
    if not 0 <= wait <= MAX_WAIT:
        raise ParamsError([{"field": "wait", "message":
                            f"must be between 0 and {MAX_WAIT:g} seconds, got {wait:g}"}])
    return wait


async def _until_finished(engine: Engine, job: Job, seconds: float) -> Job:
    """The job once it has finished, or as it is after ``seconds``."""
    deadline = time.monotonic() + seconds
    pause = 0.02
    while job.status not in TERMINAL_STATUSES and time.monotonic() < deadline:
        await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.25)
        job = await jobs_store.get_job(engine.db, job.id) or job
    return job


@post("/api/symbols/refresh", name="api-symbols-refresh-all", status_code=HTTP_202_ACCEPTED,
      responses={**REFRESH_200, **errors(429, 503)})
async def api_refresh_all(engine: Engine, wait: float | None = None) -> Response[dict[str, Any]]:
    """Refresh every tracked symbol as one job (one item per symbol)."""
    seconds = _wait_seconds(wait)
    job, enqueued = await queue.submit_or_join(engine, REFRESH_ALL.name, {})
    if not enqueued:
        return Response({"status": "already_refreshing", "job_id": job.id,
                         "message": "Refresh already in progress for all symbols"},
                        status_code=HTTP_200_OK)
    if seconds:
        job = await _until_finished(engine, job, seconds)
        if job.status in TERMINAL_STATUSES:
            return Response({"status": job.status, "job_id": job.id, "result": job.result,
                             "error": job.error}, status_code=HTTP_200_OK)
    return Response({"status": "refreshing", "job_id": job.id})


@post("/api/symbols/{symbol:str}/refresh", name="api-symbol-refresh", status_code=HTTP_202_ACCEPTED,
      responses={**REFRESH_200, **errors(404, 429, 500, 503, meaning={
          **NO_SYMBOL, 500: "With ?wait: the refresh ran and failed (Refresh failed: ...)"})})
async def api_refresh(engine: Engine, symbol: str, wait: float | None = None) -> Response[dict[str, Any]]:
    """Start a refresh: 202 refreshing; one already pending or running: 200 already_refreshing.
    ``?wait=N`` (at most 30 s) waits for it: 200 success, or 500 "Refresh failed: …"."""
    seconds = _wait_seconds(wait)
    symbol = normalize(symbol)
    if await store.version_of(engine.db, symbol) is None:
        return _not_found()
    job, enqueued = await queue.submit_or_join(engine, REFRESH.name, {"symbol": symbol})
    if not enqueued:
        return Response({"status": "already_refreshing", "job_id": job.id,
                         "message": f"Refresh already in progress for {symbol}"},
                        status_code=HTTP_200_OK)
    await engine.publish(card_event(symbol))
    if seconds:
        job = await _until_finished(engine, job, seconds)
        if job.status == Status.COMPLETED:
            result = job.result or {}
            return Response({"status": "success", "symbol": symbol, "job_id": job.id,
                             "levels_extracted": result.get("levels_extracted"),
                             "last_updated": result.get("last_updated")}, status_code=HTTP_200_OK)
        if job.status in TERMINAL_STATUSES:
            return _error(HTTP_500_INTERNAL_SERVER_ERROR,
                          f"Refresh failed: {job.error or job.status}", job_id=job.id)
    return Response({"status": "refreshing", "job_id": job.id})


EDITABLE = {"price": float, "strength": int, "kind": str}


@patch("/api/symbols/{symbol:str}/levels/{level_id:int}", name="api-symbol-level",
       responses=errors(404, 409, 413, meaning={
           404: "No such symbol, or no such level of it",
           409: "The version sent is no longer the symbol's, or a level of that kind is at that "
                "price already"}))
async def api_edit_level(engine: Engine, symbol: str, level_id: int,
                         data: dict[str, Any]) -> Response[LevelEdited]:
    """Edit a level: {version, price?, strength?, kind?}; the version read must still be the
    symbol's, else 409."""
    version = data.get("version")
    errors = []
    if not isinstance(version, int) or isinstance(version, bool):
        errors.append({"field": "version", "message": "required: the symbol's version as read "
                       "(an integer, from GET /api/symbols/{symbol})"})
    changes: dict[str, Any] = {}
    for name, value in data.items():
        if name == "version":
            continue
        if name not in EDITABLE:
            errors.append({"field": name, "message": f"cannot be edited; allowed: version, "
                           f"{', '.join(EDITABLE)}"})
        elif name == "kind" and value not in ("support", "resistance"):
            errors.append({"field": "kind", "message": f"{value!r}: allowed: support, resistance"})
        elif name == "price" and (not isinstance(value, int | float) or isinstance(value, bool)
                                  or value <= 0):
            errors.append({"field": "price", "message": f"must be a positive number, got {value!r}"})
        elif name == "strength" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            errors.append({"field": "strength", "message": f"must be an integer ≥ 1, got {value!r}"})
        else:
            changes[name] = EDITABLE[name](value)
    if errors:
        raise ParamsError(errors)
    symbol = normalize(symbol)
    try:
        level, new_version = await store.update_level(engine.db, symbol, level_id, version, changes)
    except store.SymbolNotFound:
        return _error(HTTP_404_NOT_FOUND, "Level not found"
                      if await store.version_of(engine.db, symbol) is not None else "Symbol not found")
    except store.VersionConflict as exc:
        return _error(HTTP_409_CONFLICT, str(exc))
    except IntegrityError:
        return _error(HTTP_409_CONFLICT, f"{symbol} already has a level of that kind at that price")
    await engine.publish(card_event(symbol))
    return Response({"symbol": symbol, "version": new_version, "level": level})


router = Router(path="/", route_handlers=[
    symbols_page, add_form, remove_form, refresh_form, refresh_all_form,
    api_symbols, api_symbol, api_add, api_remove, api_refresh_all, api_refresh, api_edit_level,
])
WEB = WebSlice(router=router, regions=REGIONS, nav=(NavEntry("Symbols", "/symbols"),))
