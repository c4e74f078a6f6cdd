"""`pgflow serve`'s app plus one reference endpoint, for bench/webhook.py.

    DATABASE_URL=... PGFLOW_LEAD_TOKEN=... .venv/bin/python -m bench.intake_server --port P

The app is `pgflow.web.app.create_app(settings)` served by uvicorn exactly as `pgflow serve`
serves it (cli/serve.py: the CLI's logging set-up, imported from the installed package as
`pgflow.cli.common`, no access log, lifespan on, no server header, uvicorn's default loop
and HTTP implementations), with one more route:

    POST|GET /bench/select1 -> 200 {"ok": 1}

which reads the request body and runs `select 1` on a connection of the same pool, behind
the same middleware: the cost of one pooled round trip through this server, the reference
next to POST /webhooks/leads (one `pgflow.ingest_lead()` call).

The pool is the web's own (`pgflow.db.async_pool`, application "web", the sizes and timeout
of pgflow.web.context), created here and passed to `create_app(settings, pool=...)` because
the app keeps its own pool out of reach; it is opened before the app's lifespan and closed
after it. Prints `READY <url>` once the server listens."""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench import queries
from pgflow import db
from pgflow.cli.common import configure_logging
from pgflow.config import Settings
from pgflow.web.app import create_app
from pgflow.web.context import CONNECTION_TIMEOUT, POOL_MAX_SIZE, POOL_MIN_SIZE

SELECT1_PATH = "/bench/select1"


def build_app(settings: Settings) -> Starlette:
    """create_app() on a pool of our own, with the select-1 route appended."""
    pool: AsyncConnectionPool[Any] = db.async_pool(
        settings.database_url,
        application="web",
        min_size=POOL_MIN_SIZE,
        max_size=POOL_MAX_SIZE,
        timeout=CONNECTION_TIMEOUT,
    )
    app = create_app(settings, pool=pool)
    select_one = queries.select_one()

    async def select1(request: Request) -> Response:
        await request.body()
        await select_one.arun_in(pool)
        return JSONResponse({"ok": 1})

    app.router.routes.append(Route(SELECT1_PATH, select1, methods=["GET", "POST"]))
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await pool.open(wait=True, timeout=30)
        try:
            async with inner(app):
                yield
        finally:
            await pool.close()

    app.router.lifespan_context = lifespan
    return app


class _AnnouncingServer(uvicorn.Server):
    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(f"READY http://{self.config.host}:{self.config.port}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    settings = Settings.from_env(dotenv=None)
    configure_logging(args.log_level, settings)
    config = uvicorn.Config(
        build_app(settings),
        host=args.host,
        port=args.port,
        log_config=None,
        log_level=args.log_level.lower(),
        access_log=False,
        lifespan="on",
        server_header=False,
    )
    _AnnouncingServer(config).run()
    logging.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
