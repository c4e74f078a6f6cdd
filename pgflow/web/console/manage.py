"""The manager's and the admin's pages: the funnel as pictures, campaigns, dead letters,
numbers, alerts; users (admin)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pgflow import db, errors, logs, passwords
from pgflow.web.console import auth, charts
from pgflow.web.console.guard import Form
from pgflow.web.console.render import error_page, one, page, read_ids
from pgflow.web.context import Web

log = logging.getLogger("pgflow.console")


async def funnel(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    campaign = request.query_params.get("campaign") or None
    rows, hours = await asyncio.gather(
        db.funnel(campaign).arun_in(web.pool),
        db.sends_per_hour(campaign, 24, web.now()).arun_in(web.pool),
    )
    pictures = [
        {"row": r, "stages": charts.funnel_svg(r), "steps": charts.steps_svg(r)} for r in rows
    ]
    return page(
        request,
        "funnel.html",
        user=user,
        pictures=pictures,
        campaign=campaign,
        hours=charts.hours_svg(hours),
        sent_day=sum(int(h["sent"]) for h in hours),
    )


async def campaigns(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    rows = await db.console_campaigns().arun_in(web.pool)
    return page(request, "campaigns.html", user=user, rows=rows, days=charts.DAY_NAMES)


async def dead_letters(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    return await _dead_letters_page(web, request, user, request.query_params.get("campaign"))


async def settle_dead_letters(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    action = one(form, "action")
    ids = read_ids(form.get("id", []))
    if action not in ("requeue", "discard") or not ids:
        return error_page(
            request, 400, "Nothing to do", "Tick at least one dead letter, then choose.", user
        )
    results = await db.settle_dead_letters(
        action, ids, user.email, user.user_id, web.now()
    ).arun_in(web.pool)
    logs.event(log, "console.dead_letters", user_id=user.user_id, action=action, count=len(ids))
    return await _dead_letters_page(web, request, user, None, results, action)


async def _dead_letters_page(
    web: Web,
    request: Request,
    user: auth.User,
    campaign: str | None,
    results: list[dict[str, Any]] | None = None,
    action: str | None = None,
) -> Response:
    """The dead letters (of one campaign), with what an action just did to some of them."""
    rows = await db.console_dead_letters(campaign or None, 500).arun_in(web.pool)
    return page(
        request,
        "dead_letters.html",
        user=user,
        rows=rows,
        campaign=campaign,
        results=results,
        action=action,
    )


async def numbers(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    rows = await db.number_report(web.now()).arun_in(web.pool)
    return page(request, "numbers.html", user=user, rows=rows)


async def alerts(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    rows = await db.console_alerts(300).arun_in(web.pool)
    return page(request, "alerts.html", user=user, rows=rows)


async def users(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    rows = await db.console_user_list(web.now()).arun_in(web.pool)
    return page(request, "users.html", user=user, rows=rows, roles=auth.ROLES, message=None)


async def change_users(web: Web, request: Request, user: auth.User, form: Form) -> Response:
    action, email = one(form, "action"), one(form, "email").strip().lower()
    message: str
    if action in ("add", "password"):
        try:
            hashed = await asyncio.to_thread(passwords.hash_password, one(form, "password"))
        except passwords.WeakPassword as exc:
            raise errors.InvalidInput(str(exc)) from exc
        if action == "add":
            result = await db.add_console_user(
                email, one(form, "role"), hashed, user.email, user.user_id, web.now()
            ).arun_in(web.pool)
            message = f"{result['email']} {result['result']} as {result['role']}."
        else:
            result = await db.change_console_user(
                email, "password", user.email, hashed, user.user_id, web.now()
            ).arun_in(web.pool)
            message = f"New password for {email}; {result['sessions_ended']} session(s) ended."
    elif action in ("disable", "revoke"):
        if action == "disable" and email == user.email:
            raise errors.InvalidInput("you cannot disable yourself")
        result = await db.change_console_user(
            email, action, user.email, None, user.user_id, web.now()
        ).arun_in(web.pool)
        message = f"{email}: {action}d; {result['sessions_ended']} session(s) ended."
    else:
        raise errors.InvalidInput("unknown action")
    logs.event(log, "console.users", user_id=user.user_id, action=action)
    rows = await db.console_user_list(web.now()).arun_in(web.pool)
    return page(request, "users.html", user=user, rows=rows, roles=auth.ROLES, message=message)
