"""The ASGI app: its lifespan (the connection pool) and the route table."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pgflow import db, logs
from pgflow.config import Settings
from pgflow.web import events, leads, metrics, probes, retell, twilio
from pgflow.web.console import console_routes
from pgflow.web.context import (
    CONNECTION_TIMEOUT,
    POOL_MAX_SIZE,
    POOL_MIN_SIZE,
    Clock,
    Web,
)
from pgflow.web.instruments import CountRequests, Metrics

log = logging.getLogger("pgflow.web")

Handler = Callable[[Web, Request], Awaitable[Response]]
# path, methods, handler
ROUTES: tuple[tuple[str, list[str], Handler], ...] = (
    ("/webhooks/leads", ["POST"], leads.post_lead),
    ("/webhooks/retell", ["POST"], retell.post_retell),
    ("/webhooks/events", ["POST"], events.post_event),
    ("/webhooks/twilio/status", ["POST"], twilio.post_status),
    ("/webhooks/twilio/inbound", ["POST"], twilio.post_inbound),
    ("/healthz", ["GET"], probes.healthz),
    ("/readyz", ["GET"], probes.readyz),
    ("/metrics", ["GET"], metrics.metrics),
)
WEBHOOKS = frozenset(
    {
        "/webhooks/leads",
        "/webhooks/retell",
        "/webhooks/events",
        "/webhooks/twilio/status",
        "/webhooks/twilio/inbound",
    }
)


def create_app(
    settings: Settings,
    *,
    pool: AsyncConnectionPool[Any] | None = None,
    clock: Clock | None = None,
    webhooks: bool = True,
    console: bool = True,
) -> Starlette:
    """The ASGI app: the webhooks, the probes and /metrics, and the console under /console.

    `webhooks=False` or `console=False` leave those routes out (`pgflow serve` gives the
    console a listener of its own with --console-port, or none with --no-console). Without
    `pool`, the app opens its own pool of autocommit connections in its lifespan
    and closes it on shutdown; a pool passed in belongs to the caller (open it first, with
    `kwargs={"autocommit": True}`). `clock` injects "now" into the SQL calls (tests); None
    means the database's now()."""
    served = [r for r in ROUTES if webhooks or r[0] not in WEBHOOKS]
    web = Web(settings, Metrics(path for path, _, _ in served), clock, pool)
    routes: list[BaseRoute] = [
        Route(path, functools.partial(handler, web), methods=methods)
        for path, methods, handler in served
    ]
    if console:
        routes += console_routes(web)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with _running(web, own_pool=pool is None):
            yield

    return Starlette(
        routes=routes,
        middleware=[Middleware(CountRequests, metrics=web.metrics)],
        lifespan=lifespan,
    )


@contextlib.asynccontextmanager
async def _running(web: Web, *, own_pool: bool) -> AsyncIterator[None]:
    if web.settings.lead_token is None:
        logs.event(
            log,
            "web.lead_token_missing",
            logging.WARNING,
            detail="PGFLOW_LEAD_TOKEN is not set: every lead webhook is refused with 401",
        )
    if own_pool:
        web.pool_ = db.async_pool(
            web.settings.database_url,
            application="web",
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            timeout=CONNECTION_TIMEOUT,
        )
        # Do not wait: the app starts even while the database is down (/readyz says so).
        await web.pool.open(wait=False)
    logs.event(log, "web.started", own_pool=own_pool)
    try:
        yield
    finally:
        if own_pool and web.pool_ is not None:
            await web.pool_.close()
            web.pool_ = None
        logs.event(log, "web.stopped")
