"""The ASGI app (`pgflow serve`): the lead webhook, health probes and Prometheus metrics.

Endpoints
- `POST /webhooks/leads` -- `Authorization: Bearer $PGFLOW_LEAD_TOKEN` (constant-time
  comparison). A missing or wrong token, or no token configured at all, is 401 and writes
  nothing to the database. The body is read up to 64 KiB (Content-Length is checked first,
  and a chunked body is counted while it streams); larger is 413. The body must be UTF-8
  JSON; a Content-Type other than `application/json` is accepted as long as the body
  parses, because lead tools are sloppy about it. Each lead is ONE `pgflow.ingest_lead()`
  call (a body that cannot be read at all is one `pgflow.reject_lead()` call instead), so
  every lead that got past authentication leaves a row in `pgflow.lead_events`.
  201 created, 200 already_enrolled / suppressed (`{"contact_id", "enrollment_id",
  "status"}`); errors are `{"error": code, "detail": text}`: 400 malformed_json,
  401 unauthorized, 404 unknown_campaign, 413 payload_too_large, 422 the other rejections,
  503 database_unavailable (nothing recorded: the sender should retry).
- `GET /healthz` -- the process is alive (no database access).
- `GET /readyz` -- the database answers and every migration is applied; else 503.
- `GET /metrics` -- Prometheus text: `pgflow_http_requests_total{route,method,status}`,
  `pgflow_lead_ingest_seconds{status}`, and one `pgflow_<figure>` gauge per figure of
  `pgflow.health()` (plus `pgflow_health_check_ok{check}` and `pgflow_database_up`).

Log events (logger `pgflow.web`, see `pgflow.logs`): `web.started`, `web.stopped`,
`web.lead_token_missing`, `lead.unauthorized`, `lead.ingested`, `lead.rejected`,
`lead.unavailable`, `lead.client_disconnected`. Phones are masked; the token never appears.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgflow import adb, errors, logs, migrations, phones
from pgflow.config import Settings

log = logging.getLogger("pgflow.web")

LEAD_BODY_LIMIT = 64 * 1024
LEADS_PATH = "/webhooks/leads"
ROUTES = (LEADS_PATH, "/healthz", "/readyz", "/metrics")

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
CONNECTION_TIMEOUT = 10.0  # seconds a lead waits for a pooled connection
PROBE_TIMEOUT = 2.0  # seconds /readyz and /metrics wait for one

ACCEPTED = {"created": 201, "already_enrolled": 200, "suppressed": 200}
REJECTED_STATUS = {"unknown_campaign": 404, "malformed_json": 400, "payload_too_large": 413}
INGEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_METRIC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Clock = Callable[[], dt.datetime]


def create_app(
    settings: Settings,
    *,
    pool: AsyncConnectionPool[Any] | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """The ASGI app.

    Without `pool`, the app opens its own pool of autocommit connections in its lifespan
    and closes it on shutdown; a pool passed in belongs to the caller (open it first, with
    `kwargs={"autocommit": True}`). `clock` injects "now" into pgflow.ingest_lead (tests);
    None means the database's now()."""
    service = _Service(settings, pool, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with service.running():
            yield

    return Starlette(
        routes=[
            Route(LEADS_PATH, service.leads, methods=["POST"]),
            Route("/healthz", service.healthz, methods=["GET"]),
            Route("/readyz", service.readyz, methods=["GET"]),
            Route("/metrics", service.metrics, methods=["GET"]),
        ],
        middleware=[Middleware(_CountRequests, counter=service.requests)],
        lifespan=lifespan,
    )


class _LeadError(Exception):
    """A lead refused before pgflow.ingest_lead(): HTTP status, error code, detail."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class _Service:
    """The handlers and what they share: settings, the pool, the metrics registry."""

    def __init__(
        self, settings: Settings, pool: AsyncConnectionPool[Any] | None, clock: Clock | None
    ):
        self.settings = settings
        self.clock = clock
        self._given_pool = pool
        self._pool: AsyncConnectionPool[Any] | None = pool
        self.expected_migrations = migrations.migration_ids()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pgflow_http_requests",
            "HTTP requests served, by route, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "pgflow_lead_ingest_seconds",
            "Time to record one lead (pool wait + pgflow.ingest_lead), by result.",
            ["status"],
            buckets=INGEST_BUCKETS,
            registry=self.registry,
        )

    # --- lifecycle -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        if self.settings.lead_token is None:
            logs.event(
                log,
                "web.lead_token_missing",
                logging.WARNING,
                detail="PGFLOW_LEAD_TOKEN is not set: every lead webhook is refused with 401",
            )
        own = self._given_pool is None
        if own:
            self._pool = AsyncConnectionPool(
                self.settings.database_url,
                min_size=POOL_MIN_SIZE,
                max_size=POOL_MAX_SIZE,
                timeout=CONNECTION_TIMEOUT,
                kwargs={"autocommit": True, "application_name": "pgflow-web"},
                name="pgflow-web",
                open=False,
            )
            # Do not wait: the app starts even while the database is down (/readyz says so).
            await self._pool.open(wait=False)
        logs.event(log, "web.started", own_pool=own)
        try:
            yield
        finally:
            if own and self._pool is not None:
                await self._pool.close()
                self._pool = None
            logs.event(log, "web.stopped")

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            raise RuntimeError("the app's lifespan has not started (no connection pool)")
        return self._pool

    def now(self) -> dt.datetime | None:
        return None if self.clock is None else self.clock()

    # --- POST /webhooks/leads --------------------------------------------------------

    async def leads(self, request: Request) -> Response:
        reason = self._refusal(request.headers.get("authorization"))
        if reason is not None:
            logs.event(
                log,
                "lead.unauthorized",
                logging.WARNING,
                reason=reason,
                client=request.client.host if request.client else "-",
            )
            return _error(
                401,
                "unauthorized",
                "a valid Authorization: Bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            return await self._lead(request)
        except ClientDisconnect:
            logs.event(log, "lead.client_disconnected", logging.WARNING)
            return Response(status_code=400)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # Includes the pool's PoolTimeout/PoolClosed. Nothing was recorded: retry later.
            logs.event(log, "lead.unavailable", logging.ERROR, error=type(exc).__name__)
            return _error(503, "database_unavailable", "the database is unavailable; retry later")

    def _refusal(self, header: str | None) -> str | None:
        """Why the request is refused (for the log), or None when the token is right."""
        token = self.settings.lead_token
        if token is None:
            return "no_token_configured"
        if header is None:
            return "missing_token"
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return "not_bearer"
        # Starlette decodes headers as latin-1: encoding back gives the bytes as sent.
        if not hmac.compare_digest(given.strip().encode("latin-1"), token.encode("utf-8")):
            return "wrong_token"
        return None

    async def _lead(self, request: Request) -> Response:
        now = self.now()
        body, too_large = await _read_limited(request, LEAD_BODY_LIMIT)
        try:
            if too_large:
                raise _LeadError(
                    413,
                    "payload_too_large",
                    f"the body is larger than {LEAD_BODY_LIMIT} bytes",
                )
            payload = _parse_json(body)
        except _LeadError as refused:
            result = await self._reject(body, refused.code, refused.detail, now)
            return self._rejected(result, refused.status, phone="-", campaign=None)

        edge: dict[str, Any] | None = None
        masked = "-"
        if isinstance(payload, dict) and isinstance(payload.get("phone"), str):
            normalized = phones.normalize(payload["phone"])
            edge = normalized.as_edge()
            masked = phones.mask(normalized.e164 or payload["phone"].strip())
        campaign = payload.get("campaign") if isinstance(payload, dict) else None
        campaign = campaign[:100] if isinstance(campaign, str) else None

        started = time.perf_counter()
        try:
            async with self.pool.connection() as conn:
                result = await adb.ingest_lead(conn, payload, edge, now)
        except (psycopg.DataError, errors.InvalidInput) as exc:
            # A value the SQL could not take (e.g. consent.at that is not a timestamp, a
            # \u0000 in a string): keep the lead anyway, as unreadable.
            result = await self._reject(body, "invalid_payload", _db_message(exc), now)
        status = str(result.get("status"))
        self.ingest_seconds.labels(status).observe(time.perf_counter() - started)

        if status in ACCEPTED:
            logs.event(
                log,
                "lead.ingested",
                status=status,
                contact_id=result.get("contact_id"),
                enrollment_id=result.get("enrollment_id"),
                campaign=campaign or "-",
                phone=masked,
            )
            return JSONResponse(
                {
                    "contact_id": result.get("contact_id"),
                    "enrollment_id": result.get("enrollment_id"),
                    "status": status,
                },
                status_code=ACCEPTED[status],
            )
        code = str(result.get("error") or "rejected")
        return self._rejected(
            result, REJECTED_STATUS.get(code, 422), phone=masked, campaign=campaign
        )

    async def _reject(
        self, body: bytes, code: str, detail: str, now: dt.datetime | None
    ) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            return await adb.reject_lead(conn, _storable(body), code, detail, None, now)

    def _rejected(
        self, result: dict[str, Any], http_status: int, *, phone: str, campaign: str | None
    ) -> Response:
        code = str(result.get("error") or "rejected")
        detail = str(result.get("detail") or "")
        logs.event(
            log,
            "lead.rejected",
            error=code,
            detail=detail,
            http_status=http_status,
            lead_event_id=result.get("lead_event_id"),
            campaign=campaign or "-",
            phone=phone,
        )
        return _error(http_status, code, detail)

    # --- probes and metrics ----------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            async with self.pool.connection(timeout=PROBE_TIMEOUT) as conn:
                applied = await adb.applied_migrations(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            return _not_ready(f"database unreachable ({type(exc).__name__})")
        except psycopg.Error as exc:  # e.g. no SELECT on pgflow._yoyo_migration
            return _not_ready(f"database error ({type(exc).__name__})")
        if applied is None:
            return _not_ready("schema not migrated; run `pgflow db migrate`")
        pending = [m for m in self.expected_migrations if m not in applied]
        if pending:
            return _not_ready(
                f"{len(pending)} migration(s) pending: {', '.join(pending)}; "
                "run `pgflow db migrate`"
            )
        return JSONResponse({"status": "ready"})

    async def metrics(self, request: Request) -> Response:
        health: dict[str, Any] | None
        try:
            async with self.pool.connection(timeout=PROBE_TIMEOUT) as conn:
                health = await adb.health(conn)
        except psycopg.Error:
            health = None
        scrape = CollectorRegistry(auto_describe=False)
        scrape.register(_HealthCollector(health))
        text = generate_latest(self.registry) + generate_latest(scrape)
        return Response(text, media_type=CONTENT_TYPE_LATEST)


class _HealthCollector:
    """This scrape's `pgflow.health()`: a gauge per figure, one per check, and `up`."""

    def __init__(self, health: dict[str, Any] | None) -> None:
        self.health = health

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "pgflow_database_up", "1 when pgflow.health() answered on this scrape."
        )
        up.add_metric([], 0 if self.health is None else 1)
        yield up
        if self.health is None:
            return
        checks = GaugeMetricFamily(
            "pgflow_health_check_ok", "1 when the pgflow.health() check passes.", labels=["check"]
        )
        for check in self.health.get("checks") or []:
            checks.add_metric([str(check.get("name"))], 1 if check.get("ok") else 0)
        yield checks
        for name, value in sorted((self.health.get("figures") or {}).items()):
            metric = f"pgflow_{name}"
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not _METRIC_NAME.match(metric):
                continue
            gauge = GaugeMetricFamily(metric, f"pgflow.health() figure {name}.")
            gauge.add_metric([], value)
            yield gauge


class _CountRequests:
    """ASGI middleware: count every HTTP response by route, method and status."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the error middleware answers when the app raises

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            path = scope.get("path", "")
            route = path if path in ROUTES else "other"
            self.counter.labels(route, scope.get("method", "-"), str(status)).inc()


# --- helpers -------------------------------------------------------------------------


async def _read_limited(request: Request, limit: int) -> tuple[bytes, bool]:
    """The body, or its first `limit` bytes and True when it is longer than that.

    Content-Length is believed when it says too large (only a prefix is read, to keep);
    otherwise the bytes are counted as they arrive, so a chunked body cannot slip past."""
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > limit
    buf = bytearray()
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            buf += chunk
            if len(buf) > limit:
                too_large = True
                break
    return bytes(buf[:limit]), too_large


def _parse_json(body: bytes) -> Any:
    """The JSON value of a UTF-8 body (a leading BOM tolerated); else _LeadError 400."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _LeadError(400, "malformed_json", f"the body is not UTF-8 ({exc.reason})") from None
    try:
        return json.loads(text.removeprefix("\ufeff"), parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _LeadError(
            400,
            "malformed_json",
            f"the body is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise _LeadError(400, "malformed_json", f"the body is not JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _storable(body: bytes) -> str:
    """The body as text Postgres can keep: bad UTF-8 and NUL bytes become U+FFFD."""
    return body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _db_message(exc: Exception) -> str:
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary[:500]
    return str(exc)[:500]


def _error(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse({"status": "not_ready", "reason": reason}, status_code=503)


__all__ = ["LEAD_BODY_LIMIT", "create_app"]
