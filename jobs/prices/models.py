"""Stored daily bars: one row per (symbol, day); and each symbol's coverage, kept as bars arrive."""

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


class PriceCoverage(SQLModel, table=True):
    """What is held per symbol, updated in the transaction that stores its bars: pages and the
    API read this instead of grouping every bar."""

    __tablename__ = "price_coverage"

    symbol: str = Field(primary_key=True, max_length=16)
    first_day: date
    last_day: date
    days_held: int
