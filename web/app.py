"""The Litestar application: routes, middleware, the engine and the event hub per process."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.static_files import create_static_files_router

from jobs.engine import Engine
from jobs.settings import Settings, get_settings
from web import dashboard, prices, simulations
from web.common import EXCEPTION_HANDLERS
from web.events import Hub, events_stream
from web.render import STATIC_DIR
from web.security import security_middleware

log = logging.getLogger("marketdesk.web")


def _warm_up() -> None:
    """Pay first-use costs at start-up, not on the first request: the holiday calendar loads
    its data (~0.3 s) and the strategy registry scans entry points."""
    from datetime import timedelta

    from jobs.prices.calendar import trading_days
    from jobs.prices.download import today_utc
    from jobs.simulation import catalog

    today = today_utc()
    trading_days(today - timedelta(days=3 * 366), today + timedelta(days=366))
    try:
        catalog.load_models()
    except ValueError:
        pass  # a bad models file is reported where it is used, with its name


def create_app(settings: Settings | None = None, redis_url: str | None = None) -> Litestar:
    settings = settings or get_settings()
    url = redis_url or settings.redis_url
    if not url:
        raise RuntimeError("MARKETDESK_REDIS_URL is not set (`marketdesk serve` sets it for you)")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = Engine(settings, url)
        hub = Hub(engine, queue_size=settings.sse_client_queue)
        app.state.engine = engine
        app.state.hub = hub
        await asyncio.to_thread(_warm_up)
        await hub.start()
        # everything loaded so far lives as long as the process: keep it out of the collector's
        # full passes, which otherwise walk it all and stall requests for tens of milliseconds
        gc.freeze()
        try:
            yield
        finally:
            # a clean stop must not hang on a peer that does not answer (it would keep
            # `marketdesk serve` from stopping its workers and Redis): each step gets 3 s
            for what, closing in (("the event hub", hub.stop), ("the engine", engine.close)):
                try:
                    await asyncio.wait_for(closing(), 3)
                except TimeoutError:
                    log.warning("closing %s took longer than 3 s; going on without it", what)

    return Litestar(
        route_handlers=[
            dashboard.router,
            prices.router,
            simulations.router,
            events_stream,
            create_static_files_router(path="/static", directories=[STATIC_DIR],
                                       include_in_schema=False),
        ],
        lifespan=[lifespan],
        middleware=[security_middleware(settings)],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(title="marketdesk", version="0.1.0", path="/schema"),
        # exceptions are logged by web.common.internal_error: the unexpected ones only
        logging_config=LoggingConfig(log_exceptions="never"),
    )


def app_from_env() -> Litestar:
    """Factory for `uvicorn --factory web.app:app_from_env`."""
    return create_app()
