"""The pages every console user has: sign-in, the inbox, a conversation (reply, take over,
hand back, outcome), the review queue, and the change cursor the live pages poll."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from pgflow import db, errors, logs, passwords
from pgflow.web.console import auth
from pgflow.web.console.guard import Form, decode_cursor, encode_cursor, not_set_up, path_id
from pgflow.web.console.render import error_page, one, page
from pgflow.web.context import Web
from pgflow.web.http import FormError, read_form

log = logging.getLogger("pgflow.console")

NOTICES = {
    "reply_queued": "Your text is queued; it appears as sent once the transport took it.",
    "held": "You hold this lead: the agent and the drip stay quiet until you hand it back.",
    "handed_back": "Handed back: the agent answers the lead's next text.",
    "outcome_set": "Outcome saved.",
}
FILTERS = ("campaign", "state", "outcome", "q")
STATES = ("open", "engaged", "ended", "held", "review")


def _safe_next(target: str | None) -> str:
    """Only a console path: never an open redirect."""
    if target and target.startswith("/console/") and not target.startswith("/console//"):
        return target
    return "/console/"


# --- sign-in -------------------------------------------------------------------------


async def sign_in_page(web: Web, request: Request) -> Response:
    if web.settings.console_secret is None:
        return not_set_up(request)
    return _sign_in_form(web, request, None, 200)


def _sign_in_form(web: Web, request: Request, message: str | None, status: int) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = page(
        request,
        "sign_in.html",
        status=status,
        nonce=nonce,
        message=message,
        next=_safe_next(request.query_params.get("next")),
        user=None,
    )
    response.set_cookie(
        auth.SIGN_IN_COOKIE,
        nonce,
        max_age=3600,
        path="/console",
        httponly=True,
        samesite="lax",
        secure=auth.secure_cookies(web),
    )
    return response


async def sign_in(web: Web, request: Request) -> Response:
    if web.settings.console_secret is None:
        return await sign_in_page(web, request)
    try:
        form = await read_form(request)
    except FormError as exc:
        return _sign_in_form(web, request, str(exc), 400)
    cookie = request.cookies.get(auth.SIGN_IN_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, one(form, "csrf_token")):
        return error_page(
            request, 403, "This form has expired", "Reload the sign-in page and try again."
        )
    email = one(form, "email").strip().lower()[:254]
    password = one(form, "password")
    who = await db.console_sign_in_user(email, web.now()).arun_in(web.pool)
    wait = int(who.get("retry_after_seconds") or 0)
    if wait > 0:
        logs.event(log, "console.sign_in_throttled", logging.WARNING, retry_after_s=wait)
        return _sign_in_form(
            web,
            request,
            f"Too many failed attempts for this email. Try again in {max(1, wait // 60)} "
            "minute(s).",
            429,
        )
    ok = await asyncio.to_thread(passwords.verify_password, password, who.get("password_hash"))
    ok = ok and who.get("user_id") is not None
    token = auth.new_token()
    ip, agent = auth.client_ip(request), request.headers.get("user-agent")
    try:
        await db.record_sign_in(
            email, ok, auth.token_hash(token) if ok else None, ip, agent, web.now()
        ).arun_in(web.pool)
    except errors.NotFound:
        ok = False
    if not ok:
        logs.event(log, "console.sign_in_failed", logging.WARNING)
        return _sign_in_form(web, request, "Wrong email or password.", 401)
    logs.event(log, "console.signed_in", user_id=who.get("user_id"))
    response = RedirectResponse(_safe_next(one(form, "next")), status_code=303)
    auth.set_session_cookie(web, response, token)
    response.delete_cookie(auth.SIGN_IN_COOKIE, path="/console")
    return response


async def sign_out(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    await db.end_console_session(auth.token_hash(user.token), web.now()).arun_in(web.pool)
    response = RedirectResponse("/console/sign-in", status_code=303)
    auth.clear_session_cookie(web, response)
    return response


# --- inbox and conversation -----------------------------------------------------------------


async def inbox(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    params = request.query_params
    filters = {k: params.get(k, "").strip()[:100] for k in FILTERS if params.get(k, "").strip()}
    if filters.get("state") not in (None, *STATES):
        filters.pop("state")
    after = decode_cursor(params.get("after"))
    result, campaigns = await asyncio.gather(
        db.inbox(filters, after, 50, web.now()).arun_in(web.pool),
        db.console_campaign_slugs().arun_in(web.pool),
    )
    query = urlencode(filters)
    return page(
        request,
        "inbox.html",
        user=user,
        rows=result["rows"],
        filters=filters,
        next=encode_cursor(result.get("next")),
        query=query,
        states=STATES,
        campaigns=campaigns,
        paged=after is not None,
    )


async def conversation(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    view = await db.conversation_view(path_id(request), web.now()).arun_in(web.pool)
    if view is None:
        raise errors.NotFound("no such conversation")
    notice = NOTICES.get(request.query_params.get("done", ""))
    return page(
        request,
        "conversation.html",
        user=user,
        v=view,
        notice=notice,
        reply_key=secrets.token_urlsafe(18),
        timeline=_timeline(view),
    )


def _timeline(view: dict[str, Any]) -> list[dict[str, Any]]:
    """Texts, state changes and people's actions in one time line."""
    items: list[dict[str, Any]] = [
        {"at": m["created_at"], "type": "text", "m": m} for m in view["transcript"]
    ]
    items += [{"at": n["at"], "type": "note", "n": n} for n in view["notes"]]
    items += [{"at": a["at"], "type": "audit", "a": a} for a in view["audit"]]
    order = {"text": 0, "note": 1, "audit": 2}
    return sorted(items, key=lambda i: (str(i["at"]), order[i["type"]]))


def _back(conversation_id: int, done: str) -> Response:
    return RedirectResponse(f"/console/conversations/{conversation_id}?done={done}", 303)


async def reply(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    result = await db.human_reply(
        path_id(request),
        one(form, "body"),
        user.email,
        user.user_id,
        one(form, "key"),
        web.now(),
    ).arun_in(web.pool)
    logs.event(log, "console.reply", user_id=user.user_id, message_id=result.get("message_id"))
    return _back(int(result.get("conversation_id") or path_id(request)), "reply_queued")


async def take_over(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    conversation_id = path_id(request)
    await db.take_over(
        conversation_id, user.email, user.user_id, one(form, "reason") or None, web.now()
    ).arun_in(web.pool)
    return _back(conversation_id, "held")


async def hand_back(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    conversation_id = path_id(request)
    await db.hand_back(
        conversation_id, user.email, user.user_id, web.settings.sandbox, web.now()
    ).arun_in(web.pool)
    return _back(conversation_id, "handed_back")


async def set_outcome(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    conversation_id = path_id(request)
    await db.settle(
        conversation_id,
        one(form, "status"),
        one(form, "reason") or None,
        user.email,
        user.user_id,
        web.now(),
    ).arun_in(web.pool)
    if one(form, "from") == "review":
        return RedirectResponse("/console/review", 303)
    return _back(conversation_id, "outcome_set")


async def review(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    rows = await db.console_review(200).arun_in(web.pool)
    return page(request, "review.html", user=user, rows=rows)


async def changes(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    cursor = await db.console_cursor().arun_in(web.pool)
    return JSONResponse({"cursor": cursor}, headers={"Cache-Control": "no-store"})
