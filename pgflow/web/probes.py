"""GET /healthz (the process answers: point load balancers here) and GET /readyz (the
whole system can do its job: the database answers, every migration is applied, pg_cron's
tick runs, a worker is alive whenever jobs wait, no critical alert is open; else 503 with
the reasons: point an external uptime check here)."""

from __future__ import annotations

import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pgflow import db, health
from pgflow.web.context import PROBE_TIMEOUT, Web


async def healthz(web: Web, request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(web: Web, request: Request) -> Response:
    try:
        async with web.pool.connection(timeout=PROBE_TIMEOUT) as conn:
            report = await health.areport(conn)
    except db.UNAVAILABLE as exc:
        return _not_ready(f"database unreachable ({type(exc).__name__})")
    except psycopg.Error as exc:  # e.g. no SELECT on pgflow._yoyo_migration
        return _not_ready(f"database error ({type(exc).__name__})")
    failed = [c for c in report.checks if not c.ok]
    if failed:
        return _not_ready("; ".join(f"{c.name}: {c.detail}" for c in failed))
    return JSONResponse({"status": "ready"})


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse({"status": "not_ready", "reason": reason}, status_code=503)
