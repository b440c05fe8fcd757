"""Contracts tables: the cached catalog per (exchange, var), the date-folder scan cache per
(lake version, symbol), and the snapshot per (exchange, var)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from jobs.db import UTCDateTime


class ContractCatalog(SQLModel, table=True):
    """The last catalog fetched for an (exchange, var): what a build falls back on."""

    __tablename__ = "contract_catalog"

    exchange: str = Field(primary_key=True, max_length=16)
    var: str = Field(primary_key=True, max_length=16)
    source: str = Field(max_length=16)
    cached_at: datetime = Field(sa_column=sa.Column(UTCDateTime, nullable=False))
    contracts: list[dict[str, Any]] = Field(default_factory=list,
                                            sa_column=sa.Column(sa.JSON, nullable=False))


class ContractScan(SQLModel, table=True):
    """The date folders of one symbol's lake folder, as of the folder's ``mtime_ns``: valid
    while the folder's mtime is unchanged (a new date folder changes it)."""

    __tablename__ = "contract_scan"

    lake_version: str = Field(primary_key=True, max_length=32)
    symbol: str = Field(primary_key=True, max_length=40)
    mtime_ns: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    n_dates: int
    first_date: date | None = None
    last_date: date | None = None
    # the dates as bits from first_date on (bit i: first_date + i days), see calendar.pack
    dates: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    no_data: list[str] = Field(default_factory=list, sa_column=sa.Column(sa.JSON, nullable=False))
    scanned_at: datetime = Field(sa_column=sa.Column(UTCDateTime, nullable=False))


class ContractSnapshot(SQLModel, table=True):
    """The coverage snapshot of an (exchange, var), replaced whole by each successful build;
    a failed build only records its error beside it."""

    __tablename__ = "contract_snapshot"

    exchange: str = Field(primary_key=True, max_length=16)
    var: str = Field(primary_key=True, max_length=16)
    built_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime, nullable=True))
    # the answer of GET /api/contracts as JSON text, stored once, served as it is
    payload: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    summary: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON, nullable=True))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    last_error_kind: str | None = Field(default=None, max_length=16)
    last_error_at: datetime | None = Field(default=None, sa_column=sa.Column(UTCDateTime, nullable=True))
