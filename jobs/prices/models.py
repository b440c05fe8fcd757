"""Stored daily bars: one row per (symbol, day)."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from jobs.db import UTCDateTime, utcnow


class PriceBar(SQLModel, table=True):
    __tablename__ = "price_bar"

    symbol: str = Field(primary_key=True, max_length=16)
    day: date = Field(primary_key=True)
    open: float
    high: float
    low: float
    close: float
    volume: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    provider: str = Field(max_length=32)
    fetched_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime, nullable=False))
