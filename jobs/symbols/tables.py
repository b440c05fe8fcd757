"""Tracked symbols (one row each, with a version for optimistic locking) and their levels."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from jobs.db import UTCDateTime, utcnow

DIRECTIONS = ("bullish", "bearish", "neutral")
LEVEL_KINDS = ("support", "resistance")

_VERSION = sa.Column("version", sa.Integer, nullable=False, server_default="1")


class TrackedSymbol(SQLModel, table=True):
    __tablename__ = "tracked_symbol"
    __table_args__ = (
        sa.CheckConstraint("direction IN ('bullish', 'bearish', 'neutral')",
                           name="ck_tracked_symbol_direction"),
    )
    __mapper_args__ = {"version_id_col": _VERSION}

    symbol: str = Field(primary_key=True, max_length=16)
    direction: str = Field(default="neutral", max_length=8)
    last_updated: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime, nullable=True))
    level_count: int = 0
    last_close: float | None = None
    version: int = Field(default=1, sa_column=_VERSION)
    added_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False))


class SymbolLevel(SQLModel, table=True):
    __tablename__ = "symbol_level"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('support', 'resistance')", name="ck_symbol_level_kind"),
        # a level exists once: a refresh that ran twice could not write it twice
        sa.UniqueConstraint("symbol", "kind", "price", name="uq_symbol_level"),
    )

    id: int | None = Field(default=None, primary_key=True)
    symbol: str = Field(sa_column=sa.Column(
        sa.String(16), sa.ForeignKey("tracked_symbol.symbol", ondelete="CASCADE"), nullable=False,
        index=True))
    kind: str = Field(max_length=12)
    price: float
    strength: int  # touches
    first_touch: date
    last_touch: date
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False))
