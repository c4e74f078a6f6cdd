"""The console: web pages for people, served by `pgflow serve` under /console.

- `guard`: signed in, role, CSRF, and error pages for every page;
- `auth`: session cookies and CSRF tokens; `render`: Jinja2, forms, security headers;
- `inbox`: sign-in, inbox, conversation (reply, take over, hand back, outcome), review,
  the change cursor live pages poll; `manage`: funnel, campaigns, dead letters, numbers,
  alerts, users; `charts`: the funnel's SVG pictures.
Templates and static files (our own CSS and a small script, no build step) live beside."""

from __future__ import annotations

import functools

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pgflow.web.console import inbox, manage
from pgflow.web.console.guard import Page, guarded
from pgflow.web.console.render import HERE
from pgflow.web.context import Web

# path, methods, least role, page
PAGES: tuple[tuple[str, str, str, Page], ...] = (
    ("/", "GET", "agent", inbox.inbox),
    ("/sign-out", "POST", "agent", inbox.sign_out),
    ("/changes", "GET", "agent", inbox.changes),
    ("/review", "GET", "agent", inbox.review),
    ("/conversations/{id}", "GET", "agent", inbox.conversation),
    ("/conversations/{id}/reply", "POST", "agent", inbox.reply),
    ("/conversations/{id}/takeover", "POST", "agent", inbox.take_over),
    ("/conversations/{id}/handback", "POST", "agent", inbox.hand_back),
    ("/conversations/{id}/outcome", "POST", "agent", inbox.set_outcome),
    ("/funnel", "GET", "manager", manage.funnel),
    ("/campaigns", "GET", "manager", manage.campaigns),
    ("/dead-letters", "GET", "manager", manage.dead_letters),
    ("/dead-letters", "POST", "manager", manage.settle_dead_letters),
    ("/numbers", "GET", "manager", manage.numbers),
    ("/alerts", "GET", "manager", manage.alerts),
    ("/users", "GET", "admin", manage.users),
    ("/users", "POST", "admin", manage.change_users),
)


def console_routes(web: Web) -> list[BaseRoute]:
    """Everything under /console."""
    routes: list[BaseRoute] = [
        Route("/sign-in", functools.partial(inbox.sign_in_page, web), methods=["GET"]),
        Route("/sign-in", functools.partial(inbox.sign_in, web), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    routes += [
        Route(path, guarded(web, role, page), methods=[method])
        for path, method, role, page in PAGES
    ]
    return [Mount("/console", routes=routes)]
