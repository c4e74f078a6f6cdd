"""SMS transports: the interface (`base`) and its implementations: Retell (`retell`) or
the local sandbox (`sandbox`), chosen by PGFLOW_SMS_TRANSPORT, and Twilio (`twilio`), which
the campaigns with `transport: twilio` send through."""

from __future__ import annotations

import httpx

from pgflow.config import Settings
from pgflow.errors import ConfigError
from pgflow.transport.base import SendResult, SmsTransport, TransportError
from pgflow.transport.retell import RetellClient
from pgflow.transport.sandbox import SandboxClient
from pgflow.transport.twilio import TwilioClient


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


def create_twilio(
    settings: Settings, *, timeout: httpx.Timeout | None = None
) -> TwilioClient | None:
    """The Twilio client when TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and PGFLOW_PUBLIC_URL are
    set (the sandbox sets them itself), else None: a campaign on Twilio then dead-letters
    its texts with an alert that says what to set."""
    sid, token = settings.twilio_account_sid, settings.twilio_auth_token
    public = settings.public_url
    if not (sid and token and public):
        return None
    return TwilioClient(
        sid, token, public_url=public, base_url=settings.twilio_base_url, timeout=timeout
    )


__all__ = ["SendResult", "SmsTransport", "TransportError", "create", "create_twilio"]
