"""Futures contracts coverage: the contract catalog (``catalog``), the tick-data lake and its
scan cache (``lake``), per-contract statuses (``stats``), the snapshot and the
``contracts.build`` job kind (``build``), the demo lake (``demo``) and CLI verbs (``cli``)."""

from pathlib import Path

from jobs.contracts import cli
from jobs.contracts.build import BUILD
from jobs.contracts.demo import seed
from jobs.contracts.settings import ContractsSettings
from jobs.domain import Domain


def _warm_up() -> None:
    """The holiday calendar loads its data on first use; a catalog file is read once."""
    from jobs.contracts import calendar, catalog
    from jobs.db import today_utc

    try:
        catalog.known()
    except catalog.CatalogError:
        pass  # a bad setting is reported where it is used, with its name
    today = today_utc()
    for year in range(today.year - 3, today.year + 2):
        calendar._year_mask(year)


DOMAIN = Domain(
    name="contracts", title="Contracts", kinds=(BUILD,), tables=("jobs.contracts.tables",),
    migrations=Path(__file__).with_name("migrations"), settings=ContractsSettings,
    web="web.contracts", seed=seed, cli=cli.add, warm_up=_warm_up,
)
