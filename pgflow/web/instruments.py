"""The process's own Prometheus instruments, which live as long as the app: the request
counter (and the ASGI middleware that feeds it) and the lead-ingest histogram. The
handlers reach them through `context.Web`; GET /metrics (`metrics.py`) exposes them."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

INGEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The app's own registry: counters and histograms that live as long as the process."""

    def __init__(self, routes: Iterable[str]) -> None:
        self.routes = frozenset(routes)
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

    def route(self, path: str) -> str:
        return path if path in self.routes else "other"


class CountRequests:
    """ASGI middleware: count every HTTP response by route, method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

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
            route = self.metrics.route(scope.get("path", ""))
            self.metrics.requests.labels(route, scope.get("method", "-"), str(status)).inc()
