"""The contract catalog of an (exchange, var), behind a provider interface, cached in the
database.

- ``rules`` (built in, offline): the exchange's listing rules. SHFE lists a contract for every
  month, twelve months ahead: the contract of month M opens on the trading day after the
  contract of month M-12 expires, and expires on the 15th of its delivery month, moved to the
  next trading day when the 15th is a weekend or a holiday.
- ``file``: a JSON catalog a desk supplies (``MARKETDESK_CONTRACTS_CATALOG_FILE``)::

      {"exchanges": {"SHFE": {"cu": [
          {"symbol": "SHFE.cu2501", "open_date": "2024-01-16", "expiry": "2025-01-15"}, ...]}}}

  ``open_date`` and ``expiry`` may be null (the contract's status is then ``unknown``).

A live fetch that fails falls back to the cached catalog and says so (``catalog_ok`` false,
``catalog_error``); with nothing cached the failure is the build's.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from jobs.contracts import calendar
from jobs.contracts import store as cstore
from jobs.contracts.settings import ContractsSettings, contracts_settings
from jobs.db import Database, today_utc, utcnow

SYMBOL_RE = re.compile(r"^(?P<exchange>[A-Z]{2,8})\.(?P<var>[a-z]{1,8})(?P<month>\d{3,4})$")
EXCHANGE_RE = re.compile(r"^[A-Z]{2,8}$")
VAR_RE = re.compile(r"^[a-z]{1,8}$")

# the varieties the rules provider knows, per exchange
RULES: dict[str, tuple[str, ...]] = {
    "SHFE": ("cu", "al", "zn", "pb", "ni", "sn", "au", "ag", "rb", "hc", "ss", "bu", "ru", "fu", "sp"),
}
EXPIRY_DAY = 15


class CatalogError(Exception):
    """The catalog could not be fetched (the provider's own words)."""


@dataclass(frozen=True)
class Contract:
    symbol: str
    open_date: date | None
    expiry: date | None

    def to_json(self) -> dict[str, Any]:
        return {"symbol": self.symbol,
                "open_date": self.open_date.isoformat() if self.open_date else None,
                "expiry": self.expiry.isoformat() if self.expiry else None}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Contract:
        return cls(str(raw["symbol"]), _day(raw.get("open_date")), _day(raw.get("expiry")))


def _day(value: Any) -> date | None:
    return None if value is None or value == "" else date.fromisoformat(str(value))


@dataclass(frozen=True)
class Catalog:
    contracts: list[Contract]
    ok: bool  # False: the live fetch failed and this is the cached catalog
    error: str | None
    cached_at: datetime
    source: str
    live: bool  # fetched live by this build (not read from the cache)


class Provider(Protocol):
    name: str

    def known(self) -> dict[str, tuple[str, ...]]: ...

    async def fetch(self, exchange: str, var: str) -> list[Contract]: ...


# -- rules -------------------------------------------------------------------------------------
def _month_add(year: int, month: int, n: int) -> tuple[int, int]:
    total = year * 12 + (month - 1) + n
    return total // 12, total % 12 + 1


def expiry_of(year: int, month: int) -> date:
    """The 15th of the delivery month, or the next trading day after it."""
    return calendar.trading_day_on_or_after(date(year, month, EXPIRY_DAY))


def open_of(year: int, month: int) -> date:
    """The trading day after the contract of the same month a year before expired."""
    return calendar.next_trading_day(expiry_of(year - 1, month))


def rules_contracts(exchange: str, var: str, today: date, years: int) -> list[Contract]:
    """Every listed contract whose expiry is within ``years`` before today, oldest first."""
    out = []
    year, month = _month_add(today.year - years, today.month, 0)
    end = _month_add(today.year, today.month, 12)
    oldest = date(today.year - years, today.month, min(today.day, 28))
    while (year, month) <= end:
        expiry, opened = expiry_of(year, month), open_of(year, month)
        if expiry >= oldest and opened <= today:
            out.append(Contract(f"{exchange}.{var}{year % 100:02d}{month:02d}", opened, expiry))
        year, month = _month_add(year, month, 1)
    return out


class RulesProvider:
    name = "rules"

    def __init__(self, settings: ContractsSettings) -> None:
        self.latency = settings.contracts_rules_latency_ms / 1000
        self.years = settings.contracts_history_years

    def known(self) -> dict[str, tuple[str, ...]]:
        return RULES

    async def fetch(self, exchange: str, var: str) -> list[Contract]:
        if self.latency:
            await asyncio.sleep(self.latency)
        if var not in RULES.get(exchange, ()):
            raise CatalogError(f"the listing rules know no {exchange} {var}")
        return await asyncio.to_thread(rules_contracts, exchange, var, today_utc(), self.years)


# -- file --------------------------------------------------------------------------------------
def read_catalog_file(path: Path) -> dict[str, dict[str, list[Contract]]]:
    """The file's catalog, or CatalogError saying what is wrong with it."""
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise CatalogError(f"cannot read the catalog file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CatalogError(f"the catalog file {path} is not valid JSON: {exc}") from None
    try:
        out: dict[str, dict[str, list[Contract]]] = {}
        for exchange, varieties in raw["exchanges"].items():
            if not EXCHANGE_RE.match(exchange):
                raise ValueError(f"exchange {exchange!r} is not 2-8 capital letters")
            out[exchange] = {}
            for var, contracts in varieties.items():
                if not VAR_RE.match(var):
                    raise ValueError(f"var {var!r} is not 1-8 small letters")
                out[exchange][var] = [Contract.from_json(c) for c in contracts]
        return out
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CatalogError(f"the catalog file {path} does not follow the format "
                           f'{{"exchanges": {{EXCHANGE: {{var: [{{symbol, open_date, expiry}}]}}}}}}: '
                           f"{exc}") from None


class FileProvider:
    name = "file"

    def __init__(self, settings: ContractsSettings) -> None:
        if settings.contracts_catalog_file is None:
            raise CatalogError("MARKETDESK_CONTRACTS_CATALOG=file needs MARKETDESK_CONTRACTS_CATALOG_FILE")
        self.path = settings.contracts_catalog_file
        self._known: dict[str, tuple[str, ...]] = {}

    def known(self) -> dict[str, tuple[str, ...]]:
        """What the file held when last read successfully (read at start-up and on each fetch)."""
        if not self._known:
            try:
                self._remember(read_catalog_file(self.path))
            except CatalogError:
                pass
        return self._known

    def _remember(self, found: dict[str, dict[str, list[Contract]]]) -> None:
        self._known = {ex: tuple(sorted(vs)) for ex, vs in found.items()}

    async def fetch(self, exchange: str, var: str) -> list[Contract]:
        found = await asyncio.to_thread(read_catalog_file, self.path)
        self._remember(found)
        if var not in found.get(exchange, {}):
            raise CatalogError(f"the catalog file {self.path} lists no {exchange} {var}")
        return found[exchange][var]


_PROVIDERS: dict[tuple[Any, ...], Provider] = {}


def provider(settings: ContractsSettings | None = None) -> Provider:
    settings = settings or contracts_settings()
    key = (settings.contracts_catalog, settings.contracts_catalog_file,
           settings.contracts_rules_latency_ms, settings.contracts_history_years)
    if key not in _PROVIDERS:
        _PROVIDERS[key] = RulesProvider(settings) if key[0] == "rules" else FileProvider(settings)
    return _PROVIDERS[key]


def known() -> dict[str, tuple[str, ...]]:
    return provider().known()


async def get_catalog(db: Database, exchange: str, var: str, *, refresh: bool,
                      settings: ContractsSettings | None = None) -> Catalog:
    """The catalog for a build: fetched live when ``refresh`` (or when the cached one is older
    than MARKETDESK_CONTRACTS_CATALOG_TTL_S, or there is none); else the cached one. A live
    fetch that fails falls back to the cached catalog, saying why."""
    settings = settings or contracts_settings()
    cached = await cstore.cached_catalog(db, exchange, var)
    now = utcnow()
    if cached is not None and not refresh:
        contracts, cached_at, source = cached
        if (now - cached_at).total_seconds() < settings.contracts_catalog_ttl_s:
            return Catalog([Contract.from_json(c) for c in contracts], True, None, cached_at, source,
                           live=False)
    prov = provider(settings)
    try:
        fresh = await prov.fetch(exchange, var)
    except CatalogError as exc:
        if cached is None:
            raise
        contracts, cached_at, source = cached
        return Catalog([Contract.from_json(c) for c in contracts], False, str(exc), cached_at, source,
                       live=False)
    await cstore.save_catalog(db, exchange, var, prov.name, now, [c.to_json() for c in fresh])
    return Catalog(list(fresh), True, None, now, prov.name, live=True)
