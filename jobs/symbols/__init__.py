"""Tracked symbols: support and resistance levels drawn from stored daily bars (``levels``),
staleness computed on every read (``staleness``), the refresh job kinds and the scheduled
staleness check (``refresh``). Built on prices."""

from pathlib import Path

from jobs.domain import Domain, Periodic
from jobs.symbols.demo import seed
from jobs.symbols.refresh import REFRESH, REFRESH_ALL, check_staleness
from jobs.symbols.settings import SymbolsSettings, symbols_settings


async def _check(engine: object) -> None:
    await check_staleness(engine)


DOMAIN = Domain(
    name="symbols", title="Symbols", kinds=(REFRESH, REFRESH_ALL), tables=("jobs.symbols.tables",),
    migrations=Path(__file__).with_name("migrations"), settings=SymbolsSettings,
    web="web.symbols", seed=seed, after=("prices",),
    periodic=(Periodic("symbols.staleness", lambda: symbols_settings().symbol_staleness_check_seconds,
                       _check),),
)
