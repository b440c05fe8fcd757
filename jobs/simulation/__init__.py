"""Trading simulations: strategies (``strategies``), portfolio arithmetic (``portfolio``), result
metrics (``metrics``), the configured models with their per-day step (``catalog``), the
``simulation.run`` job kind (``job``) and the trigger (``trigger``). Built on prices."""

from pathlib import Path

from jobs.domain import Domain
from jobs.simulation import cli
from jobs.simulation.job import RUN
from jobs.simulation.settings import SimulationSettings


def _warm_up() -> None:
    from jobs.simulation import catalog

    try:
        catalog.load_models()
    except ValueError:
        pass  # a bad models file is reported where it is used, with its name


DOMAIN = Domain(
    name="simulation", title="Simulations", kinds=(RUN,), tables=("jobs.simulation.tables",),
    migrations=Path(__file__).with_name("migrations"), settings=SimulationSettings,
    web="web.simulations", after=("prices",), warm_up=_warm_up, cli=cli.add,
)
