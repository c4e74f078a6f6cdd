"""SMS transports: the interface (`base`) and its implementations: Retell (`retell`) and
the local sandbox (`sandbox`), chosen by PGFLOW_SMS_TRANSPORT."""

from __future__ import annotations

import httpx

from pgflow.config import Settings
from pgflow.errors import ConfigError
from pgflow.transport.base import SendResult, SmsTransport, TransportError
from pgflow.transport.retell import RetellClient
from pgflow.transport.sandbox import SandboxClient


def create(
    settings: Settings,
    *,
    timeout: httpx.Timeout | None = None,
    limits: httpx.Limits | None = None,
) -> RetellClient:
    """The transport PGFLOW_SMS_TRANSPORT names, pointed at RETELL_BASE_URL."""
    if not settings.retell_api_key:
        raise ConfigError("RETELL_API_KEY is not set; the worker cannot send SMS without it")
    cls = SandboxClient if settings.sandbox else RetellClient
    return cls(settings.retell_api_key, settings.retell_base_url, timeout=timeout, limits=limits)


__all__ = ["SendResult", "SmsTransport", "TransportError", "create"]
