"""The door of every console page: configured, signed in, the right role, a CSRF token on
every POST; and every failure turned into a page for people (never a traceback)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pgflow import db, errors, logs
from pgflow.web.console import auth
from pgflow.web.console.render import error_page, plain_error
from pgflow.web.context import Web
from pgflow.web.http import FormError, read_form

log = logging.getLogger("pgflow.console")

Form = dict[str, list[str]]
Page = Callable[[Web, Request, auth.User, Form], Awaitable[Response]]

# What a refused action tells the person, by the engine's exception.
REFUSALS: dict[type[Exception], tuple[int, str]] = {
    errors.NotFound: (404, "Not found"),
    errors.InvalidInput: (400, "That cannot be done"),
    errors.Suppressed: (409, "The lead opted out"),
    errors.IllegalTransition: (409, "That cannot be done now"),
    errors.Conflict: (409, "Already there"),
}


def guarded(web: Web, role: str, page: Page) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint that runs `page` only for a signed-in user of at least `role`,
    with the POST's form read and its CSRF token checked."""

    @functools.wraps(page)
    async def endpoint(request: Request) -> Response:
        user: auth.User | None = None
        try:
            if web.settings.console_secret is None:
                return not_set_up(request)
            user = await auth.current_user(web, request)
            if user is None:
                if request.method == "GET":
                    target = request.url.path
                    if request.url.query:
                        target += "?" + request.url.query
                    return RedirectResponse(
                        f"/console/sign-in?next={quote(target, safe='')}", status_code=303
                    )
                return error_page(
                    request, 403, "Signed out", "Your session has ended. Sign in again."
                )
            if not user.may(role):
                logs.event(
                    log,
                    "console.forbidden",
                    logging.WARNING,
                    user_id=user.user_id,
                    role=user.role,
                    path=request.url.path,
                )
                return error_page(
                    request,
                    403,
                    "Not allowed",
                    f"This page is for the {role} role and up; you are {user.role}.",
                    user,
                )
            form: Form = {}
            if request.method == "POST":
                try:
                    form = await read_form(request)
                except FormError as exc:
                    return error_page(request, 400, "That form could not be read", str(exc), user)
                sent = (form.get("csrf_token") or [""])[0]
                if not auth.csrf_ok(user, sent):
                    logs.event(
                        log,
                        "console.csrf_refused",
                        logging.WARNING,
                        user_id=user.user_id,
                        path=request.url.path,
                    )
                    return error_page(
                        request,
                        403,
                        "This form has expired",
                        "The form was not sent from your console session. Go back, reload "
                        "the page and try again.",
                        user,
                    )
            return await page(web, request, user, form)
        except tuple(REFUSALS) as exc:
            status, title = next(v for k, v in REFUSALS.items() if isinstance(exc, k))
            return error_page(request, status, title, errors.first_line(exc), user)
        except db.UNAVAILABLE:
            logs.event(log, "console.database_unavailable", logging.ERROR, path=request.url.path)
            return error_page(
                request,
                503,
                "The database is not reachable",
                "Nothing was changed. Try again in a moment.",
                user,
            )
        except Exception as exc:  # a page for people, the details in the log
            logs.event(
                log,
                "console.failed",
                logging.ERROR,
                path=request.url.path,
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
            try:
                return error_page(
                    request,
                    500,
                    "Something went wrong",
                    "The error was logged. Nothing was changed unless the page says so.",
                    user,
                )
            except Exception:
                return plain_error(500, "Something went wrong")

    return endpoint


def not_set_up(request: Request) -> Response:
    """What every console page says before PGFLOW_CONSOLE_SECRET is set."""
    return error_page(
        request,
        503,
        "The console is not set up",
        "Set PGFLOW_CONSOLE_SECRET (at least 32 random characters) for pgflow serve, then add"
        " a user with `pgflow users add EMAIL --role admin`.",
    )


def path_id(request: Request, name: str = "id") -> int:
    value = str(request.path_params.get(name, ""))
    if not value.isdigit() or len(value) > 18:
        raise errors.NotFound(f"no such {name}")
    return int(value)


def encode_cursor(cursor: dict[str, Any] | None) -> str:
    return "" if cursor is None else quote(json.dumps(cursor, separators=(",", ":")), safe="")


def decode_cursor(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or set(value) != {"bucket", "at", "id"}:
        return None
    if not isinstance(value["bucket"], int) or not isinstance(value["id"], int):
        return None
    return value
