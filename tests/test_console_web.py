"""The console over HTTP (no browser): its listeners, sign-in throttling, cookies, roles,
redirects and error pages, against the real app under uvicorn and a real database."""

from __future__ import annotations

import re
from typing import Any

import httpx
import psycopg
import pytest

from pgflow import db as pdb
from pgflow import passwords
from pgflow.config import Settings
from tests.factories import count
from tests.processes import ServeProcess, serving, wait_until

Conn = psycopg.Connection[Any]
SECRET = "x" * 40
PASSWORD = "correct horse battery"
HASHED = passwords.hash_password(PASSWORD)


def _settings(db_url: str, **extra: Any) -> Settings:
    return Settings(database_url=db_url, lead_token="t", console_secret=SECRET, **extra)


def _sign_in(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    form = client.get("/console/sign-in")
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert nonce, form.text[:300]
    return client.post(
        "/console/sign-in",
        data={"csrf_token": nonce.group(1), "email": email, "password": password},
    )


@pytest.fixture
def users(db: Conn) -> None:
    for email, role in (("a@x.io", "agent"), ("m@x.io", "manager"), ("root@x.io", "admin")):
        pdb.add_console_user(email, role, HASHED, "test").run(db)


def test_sign_in_sets_a_signed_httponly_cookie_and_https_makes_it_secure(
    db_url: str, users: None
) -> None:
    with serving(_settings(db_url, public_url="https://sms.example.com")) as client:
        form = client.get("/console/sign-in")
        assert "Secure" in form.headers["set-cookie"]
        nonce = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert nonce
        # over https the browser sends the Secure form cookie back; this client is on http
        signed = client.post(
            "/console/sign-in",
            data={"csrf_token": nonce.group(1), "email": "a@x.io", "password": PASSWORD},
            headers={"Cookie": f"pgflow_sign_in={nonce.group(1)}"},
        )
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        assert "pgflow_session=" in cookie
        assert "HttpOnly" in cookie
        assert "Secure" in cookie
        assert "SameSite=lax" in cookie
    with serving(_settings(db_url)) as client:
        assert "Secure" not in _sign_in(client, "a@x.io").headers["set-cookie"]


def test_five_failures_throttle_the_email_even_for_the_right_password(
    db_url: str, db: Conn, users: None
) -> None:
    with serving(_settings(db_url)) as client:
        for _ in range(5):
            assert _sign_in(client, "a@x.io", "wrong password!").status_code == 401
        throttled = _sign_in(client, "a@x.io")
        assert throttled.status_code == 429
        assert "Too many failed attempts" in throttled.text
        assert _sign_in(client, "m@x.io").status_code == 303  # another email is not affected
    assert count(db, "console_sign_ins", "email = 'a@x.io' and not ok") == 5


def test_an_unknown_email_and_a_disabled_user_cannot_sign_in(
    db_url: str, db: Conn, users: None
) -> None:
    pdb.change_console_user("m@x.io", "disable", "test").run(db)
    with serving(_settings(db_url)) as client:
        assert _sign_in(client, "nobody@x.io").status_code == 401
        assert _sign_in(client, "m@x.io").status_code == 401


def test_a_revoked_session_is_signed_out(db_url: str, db: Conn, users: None) -> None:
    with serving(_settings(db_url)) as client:
        assert _sign_in(client, "a@x.io").status_code == 303
        assert client.get("/console/").status_code == 200
        pdb.change_console_user("a@x.io", "revoke", "test").run(db)
        gone = client.get("/console/")
        assert gone.status_code == 303
        assert gone.headers["location"].startswith("/console/sign-in")


def test_roles_are_enforced_on_the_server(db_url: str, users: None) -> None:
    pages = ("/console/funnel", "/console/dead-letters", "/console/numbers", "/console/alerts")
    with serving(_settings(db_url)) as client:
        _sign_in(client, "a@x.io")
        assert client.get("/console/review").status_code == 200
        for path in (*pages, "/console/campaigns", "/console/users"):
            refused = client.get(path)
            assert refused.status_code == 403, path
            assert "Not allowed" in refused.text
    with serving(_settings(db_url)) as client:
        _sign_in(client, "m@x.io")
        for path in (*pages, "/console/campaigns"):
            assert client.get(path).status_code == 200, path
        assert client.get("/console/users").status_code == 403
    with serving(_settings(db_url)) as client:
        _sign_in(client, "root@x.io")
        assert client.get("/console/users").status_code == 200


def test_sign_in_redirects_only_inside_the_console(db_url: str, users: None) -> None:
    with serving(_settings(db_url)) as client:
        bounce = client.get("/console/review")
        assert bounce.status_code == 303
        assert bounce.headers["location"] == "/console/sign-in?next=%2Fconsole%2Freview"
        form = client.get("/console/sign-in", params={"next": "//evil.example/x"})
        nonce = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert nonce
        assert 'value="/console/"' in form.text  # the hostile target was dropped
        signed = client.post(
            "/console/sign-in",
            data={
                "csrf_token": nonce.group(1),
                "email": "a@x.io",
                "password": PASSWORD,
                "next": "https://evil.example/",
            },
        )
        assert signed.headers["location"] == "/console/"


def test_a_sign_in_post_without_its_form_cookie_is_refused(db_url: str, users: None) -> None:
    with serving(_settings(db_url)) as client:
        forged = client.post(
            "/console/sign-in",
            data={"csrf_token": "made-up", "email": "a@x.io", "password": PASSWORD},
        )
        assert forged.status_code == 403
        assert "pgflow_session" not in forged.headers.get("set-cookie", "")


def test_without_a_secret_the_console_says_how_to_set_it_up(db_url: str) -> None:
    with serving(Settings(database_url=db_url)) as client:
        page = client.get("/console/")
        assert page.status_code == 503
        assert "PGFLOW_CONSOLE_SECRET" in page.text
        assert page.headers["content-type"].startswith("text/html")


def test_pages_carry_security_headers_and_no_traceback(db_url: str, users: None) -> None:
    with serving(_settings(db_url)) as client:
        _sign_in(client, "a@x.io")
        page = client.get("/console/")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        bad = client.get("/console/conversations/abc")
        assert bad.status_code == 404
        assert "Traceback" not in bad.text


def test_the_console_on_its_own_listener_and_none_at_all(db_url: str) -> None:
    with serving(_settings(db_url)) as client:
        assert client.get("/console/sign-in").status_code == 200
    from pgflow.web.app import create_app

    webhooks_only = create_app(_settings(db_url), console=False)
    console_only = create_app(_settings(db_url), webhooks=False)
    paths = {getattr(r, "path", "") for r in webhooks_only.routes}
    assert "/webhooks/leads" in paths
    assert "/console" not in paths
    paths = {getattr(r, "path", "") for r in console_only.routes}
    assert "/console" in paths
    assert "/webhooks/leads" not in paths


@pytest.mark.slow
def test_serve_with_a_console_port_splits_the_listeners(db_url: str) -> None:
    from tests.processes import free_port

    console_port = free_port()
    env = {"PGFLOW_CONSOLE_SECRET": SECRET, "PGFLOW_LEAD_TOKEN": "t"}
    serve = ServeProcess(db_url, "--console-port", str(console_port), env=env)
    try:
        serve.started()
        console = f"http://127.0.0.1:{console_port}"
        wait_until(
            lambda: httpx.get(f"{console}/console/sign-in").status_code == 200,
            what="the console listener",
        )
        assert httpx.get(f"{serve.url}/console/sign-in").status_code == 404
        assert httpx.post(f"{console}/webhooks/leads", json={}).status_code == 404
        assert httpx.post(f"{serve.url}/webhooks/leads", json={}).status_code == 401
        assert serve.terminate() == 0
    finally:
        serve.stop()
