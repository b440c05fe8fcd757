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

from jobs.domain import check_all_settings, warm_up_all
from jobs.engine import Engine
from jobs.ops.logbuffer import installed
from jobs.settings import Settings, get_settings
from web.common import DEPENDENCIES, EXCEPTION_HANDLERS, AppRequest
from web.events import Hub, events_stream
from web.render import ENV, STATIC_DIR
from web.security import security_middleware
from web.slice import load_slices

log = logging.getLogger("marketdesk.web")


def create_app(settings: Settings | None = None, redis_url: str | None = None,
               bind_host: str | None = None) -> Litestar:
    settings = settings or get_settings()
    url = redis_url or settings.redis_url
    if not url:
        raise RuntimeError("MARKETDESK_REDIS_URL is not set (`marketdesk serve` sets it for you)")
    check_all_settings()
    slices = load_slices()
    ENV.globals["NAV"] = [entry for s in slices for entry in s.nav]
    for s in slices:
        if s.templates is not None and str(s.templates) not in ENV.loader.searchpath:  # type: ignore[union-attr]
            ENV.loader.searchpath.append(str(s.templates))  # type: ignore[union-attr]

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = Engine(settings, url)
        hub = Hub(engine, queue_size=settings.sse_client_queue,
                  client_bytes=settings.sse_client_bytes)
        app.state.engine = engine
        app.state.hub = hub
        await asyncio.to_thread(warm_up_all)
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
                    async with asyncio.timeout(3):
                        await closing()
                except TimeoutError:
                    log.warning("closing %s took longer than 3 s; going on without it", what)

    app = Litestar(
        route_handlers=[
            *(s.router for s in slices if s.router is not None),
            events_stream,
            create_static_files_router(path="/static", directories=[STATIC_DIR],
                                       include_in_schema=False),
        ],
        lifespan=[lifespan, *(hook for s in slices for hook in s.lifespan)],
        dependencies=DEPENDENCIES,
        request_class=AppRequest,
        request_max_body_size=settings.max_body_bytes,
        middleware=[m for s in slices for m in s.middleware],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(title="marketdesk", version="0.1.0", path="/schema"),
        # exceptions are logged by web.common.internal_error: the unexpected ones only. The
        # root logger is set up once a process: a second app (tests, tools embedding one)
        # would otherwise replace the first's handlers, its log capture with them
        logging_config=LoggingConfig(log_exceptions="never", configure_root_logger=installed() is None),
    )
    # around the whole application, not its routes: unknown paths and methods get the Host
    # check and the security headers too
    app.asgi_handler = security_middleware(settings, bind_host)(app.asgi_handler)
    return app


def app_from_env() -> Litestar:
    """Factory for `uvicorn --factory web.app:app_from_env`."""
    return create_app()
