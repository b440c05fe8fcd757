from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from jobs.context import JobContext
from jobs.db import operation, utcnow
from jobs.registry import JobKind
from tests.sample_domain.tables import Note

NOTES = Note.__table__  # type: ignore[attr-defined]


class WriteParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=200)


@operation
def add_note(conn: sa.Connection, text: str) -> int:
    stmt = sa.insert(NOTES).values(text=text, written_at=utcnow()).returning(NOTES.c.id)
    return int(conn.execute(stmt).scalar_one())


@operation
def all_notes(conn: sa.Connection) -> list[str]:
    return [row[0] for row in conn.execute(sa.select(NOTES.c.text).order_by(NOTES.c.id))]


async def write(ctx: JobContext, params: WriteParams) -> dict[str, Any]:
    note_id = await add_note(ctx.engine.db, params.text)
    await ctx.engine.publish(("note", ("notes",), {"id": note_id, "text": params.text}))
    return {"note_id": note_id}


WRITE = JobKind(name="notes.write", title="Note", params_model=WriteParams, func=write)
