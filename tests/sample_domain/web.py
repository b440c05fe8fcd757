from pathlib import Path

from litestar import Response, Router, get
from litestar.plugins.htmx import HTMXRequest

from jobs.engine import Engine
from jobs.events import Event
from tests.sample_domain.kind import all_notes
from web.common import page
from web.render import render
from web.slice import Message, NavEntry, Region, WebSlice


async def _notes(engine: Engine, topic: str, event: Event | None) -> list[Message]:
    return [("notes", render("notes/list.html", notes=await all_notes(engine.db)))]


@get("/notes")
async def notes_page(request: HTMXRequest, engine: Engine) -> Response[str]:
    return page(request, "notes/page.html", notes=await all_notes(engine.db))


WEB = WebSlice(router=Router(path="/", route_handlers=[notes_page]),
               regions=(Region("notes", _notes, follows=("note",)),),
               nav=(NavEntry("Notes", "/notes"),), templates=Path(__file__).with_name("templates"))
