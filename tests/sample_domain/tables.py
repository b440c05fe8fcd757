from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from jobs.db import UTCDateTime, utcnow


class Note(SQLModel, table=True):
    __tablename__ = "sample_note"

    id: int | None = Field(default=None, primary_key=True)
    text: str = Field(max_length=200)
    written_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False))
