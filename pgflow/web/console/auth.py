"""Who is asking: signed session cookies, CSRF tokens, roles.

The session cookie holds a random token and its HMAC under PGFLOW_CONSOLE_SECRET; the
database keeps only the token's SHA-256 (pgflow.console_sessions), so sessions expire and
can be revoked there. Every form carries a CSRF token derived from the session (HMAC of
the token): a POST without it, or with another session's, is refused. The sign-in form,
before any session, uses a double-submit cookie instead."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pgflow import db
from pgflow.web.context import Web

SESSION_COOKIE = "pgflow_session"
SIGN_IN_COOKIE = "pgflow_sign_in"
ROLES = ("agent", "manager", "admin")
SESSION_MAX_AGE = 7 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class User:
    user_id: int
    email: str
    role: str
    token: bytes  # the session's token (never logged, never sent back but in the cookie)
    csrf: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, purpose: str, data: bytes) -> bytes:
    return hmac.new(secret.encode(), purpose.encode() + b":" + data, hashlib.sha256).digest()


def new_token() -> bytes:
    return secrets.token_bytes(32)


def token_hash(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def cookie_value(secret: str, token: bytes) -> str:
    return f"{_b64(token)}.{_b64(_sign(secret, 'session', token))}"


def token_of(secret: str, value: str | None) -> bytes | None:
    """The token of a well-signed cookie value, else None."""
    if not value or value.count(".") != 1:
        return None
    raw, sig = value.split(".")
    try:
        token, mac = _unb64(raw), _unb64(sig)
    except (ValueError, TypeError):
        return None
    if len(token) != 32 or not hmac.compare_digest(mac, _sign(secret, "session", token)):
        return None
    return token


def csrf_for(secret: str, token: bytes) -> str:
    return _b64(_sign(secret, "csrf", token))


def secure_cookies(web: Web) -> bool:
    return (web.settings.public_url or "").startswith("https://")


def set_session_cookie(web: Web, response: Response, token: bytes) -> None:
    assert web.settings.console_secret is not None
    response.set_cookie(
        SESSION_COOKIE,
        cookie_value(web.settings.console_secret, token),
        max_age=SESSION_MAX_AGE,
        path="/console",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(web),
    )


def clear_session_cookie(web: Web, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/console", httponly=True, samesite="lax", secure=secure_cookies(web)
    )


async def current_user(web: Web, request: Request) -> User | None:
    """The signed-in user of this request, or None (no cookie, bad signature, a session
    expired, revoked or of a disabled user)."""
    secret = web.settings.console_secret
    if secret is None:
        return None
    token = token_of(secret, request.cookies.get(SESSION_COOKIE))
    if token is None:
        return None
    row: dict[str, Any] | None = await db.console_session(token_hash(token), web.now()).arun_in(
        web.pool
    )
    if row is None:
        return None
    return User(
        user_id=int(row["user_id"]),
        email=str(row["email"]),
        role=str(row["role"]),
        token=token,
        csrf=csrf_for(secret, token),
    )


def csrf_ok(user: User, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(user.csrf.encode(), str(sent).encode())


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None
