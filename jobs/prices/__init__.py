"""Price data: providers, stored daily bars, coverage, and the download job kind."""

from pathlib import Path

from jobs.domain import Domain
from jobs.prices import cli
from jobs.prices.demo import seed
from jobs.prices.download import DOWNLOAD
from jobs.prices.settings import PricesSettings


def _warm_up() -> None:
    """The holiday calendar loads its data on first use (~0.3 s)."""
    from datetime import timedelta

    from jobs.db import today_utc
    from jobs.prices.calendar import trading_days

    today = today_utc()
    trading_days(today - timedelta(days=3 * 366), today + timedelta(days=366))


DOMAIN = Domain(
    name="prices", title="Prices", kinds=(DOWNLOAD,), tables=("jobs.prices.models",),
    migrations=Path(__file__).with_name("migrations"),
    settings=PricesSettings, web="web.prices", seed=seed, cli=cli.add, warm_up=_warm_up,
)
