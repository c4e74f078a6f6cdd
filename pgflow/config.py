"""Configuration: read once from the environment (and an optional .env file), validated."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from pgflow.errors import ConfigError

DEFAULT_RETELL_BASE_URL = "https://api.retellai.com"
DEFAULT_TWILIO_BASE_URL = "https://api.twilio.com"
# The local sandbox (`pgflow sandbox serve`) speaks Retell's and Twilio's APIs here, with
# this key (Twilio's auth token too) and this Account SID, and calls `pgflow serve` back on
# SANDBOX_PUBLIC_URL, so a sandbox set-up needs no configuration at all.
SANDBOX_BASE_URL = "http://127.0.0.1:8090"
SANDBOX_API_KEY = "pgflow-sandbox"
SANDBOX_TWILIO_ACCOUNT_SID = "AC5a0db0c55a0db0c55a0db0c55a0db0c5"
SANDBOX_PUBLIC_URL = "http://127.0.0.1:8080"
TRANSPORTS = ("retell", "sandbox")
LOG_FORMATS = ("json", "text")
MIN_SECRET_LENGTH = 32


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines; `#` comments, optional `export `, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str
    retell_api_key: str | None = None
    retell_base_url: str = DEFAULT_RETELL_BASE_URL
    llm_model: str | None = None
    llm_api_base: str | None = None
    lead_token: str | None = None
    alert_webhook_url: str | None = None
    events_token: str | None = None
    sms_transport: str = "retell"
    log_format: str = "json"
    console_secret: str | None = None
    public_url: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_base_url: str = DEFAULT_TWILIO_BASE_URL

    @property
    def sandbox(self) -> bool:
        """The transport takes our own text into a chat: the engine writes agent replies."""
        return self.sms_transport == "sandbox"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")
    ) -> Settings:
        """Settings from `env` (default: os.environ) over the values of a .env file."""
        merged: dict[str, str] = read_dotenv(dotenv) if dotenv is not None else {}
        merged.update(os.environ if env is None else env)

        def get(name: str) -> str | None:
            value = merged.get(name, "").strip()
            return value or None

        database_url = get("DATABASE_URL")
        if database_url is None:
            raise ConfigError(
                "DATABASE_URL is not set; run `scripts/db.sh up` for a local database "
                "or export DATABASE_URL=postgresql://..."
            )
        if urlsplit(database_url).scheme not in ("postgres", "postgresql"):
            raise ConfigError("DATABASE_URL must start with postgresql://")
        for name in (
            "RETELL_BASE_URL",
            "PGFLOW_LLM_API_BASE",
            "PGFLOW_ALERT_WEBHOOK_URL",
            "PGFLOW_PUBLIC_URL",
            "TWILIO_BASE_URL",
        ):
            value = get(name)
            if value is not None and urlsplit(value).scheme not in ("http", "https"):
                raise ConfigError(f"{name} must be an http(s) URL")
        transport = (get("PGFLOW_SMS_TRANSPORT") or "retell").lower()
        if transport not in TRANSPORTS:
            raise ConfigError(f"PGFLOW_SMS_TRANSPORT must be one of {', '.join(TRANSPORTS)}")
        log_format = (get("PGFLOW_LOG_FORMAT") or "json").lower()
        if log_format not in LOG_FORMATS:
            raise ConfigError(f"PGFLOW_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
        secret = get("PGFLOW_CONSOLE_SECRET")
        if secret is not None and len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"PGFLOW_CONSOLE_SECRET must have at least {MIN_SECRET_LENGTH} characters "
                "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        sandbox = transport == "sandbox"
        # In sandbox mode one local server answers for Retell and Twilio: Twilio's settings
        # follow Retell's (the sandbox's key is also its auth token), explicit values win.
        retell_api_key = get("RETELL_API_KEY") or (SANDBOX_API_KEY if sandbox else None)
        retell_base_url = (
            get("RETELL_BASE_URL") or (SANDBOX_BASE_URL if sandbox else DEFAULT_RETELL_BASE_URL)
        ).rstrip("/")
        twilio_base_url = get("TWILIO_BASE_URL") or (
            retell_base_url if sandbox else DEFAULT_TWILIO_BASE_URL
        )
        public_url = get("PGFLOW_PUBLIC_URL") or (SANDBOX_PUBLIC_URL if sandbox else "")
        return cls(
            database_url=database_url,
            retell_api_key=retell_api_key,
            retell_base_url=retell_base_url,
            llm_model=get("PGFLOW_LLM_MODEL"),
            llm_api_base=get("PGFLOW_LLM_API_BASE"),
            lead_token=get("PGFLOW_LEAD_TOKEN"),
            alert_webhook_url=get("PGFLOW_ALERT_WEBHOOK_URL"),
            events_token=get("PGFLOW_EVENTS_TOKEN"),
            sms_transport=transport,
            log_format=log_format,
            console_secret=secret,
            public_url=public_url.rstrip("/") or None,
            twilio_account_sid=(
                get("TWILIO_ACCOUNT_SID") or (SANDBOX_TWILIO_ACCOUNT_SID if sandbox else None)
            ),
            twilio_auth_token=get("TWILIO_AUTH_TOKEN") or (retell_api_key if sandbox else None),
            twilio_base_url=twilio_base_url.rstrip("/"),
        )
