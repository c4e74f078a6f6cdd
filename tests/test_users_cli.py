"""`pgflow users`: console users added, listed, disabled, given a new password, signed out."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg
import typer
from typer.testing import CliRunner

from pgflow import db as pdb
from pgflow import passwords
from pgflow.cli import users
from tests.helpers import rows, scalar

Conn = psycopg.Connection[Any]
cli = typer.Typer()
cli.add_typer(users.app, name="users")

SECRET = "correct horse battery"


def run(db_url: str, *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(
        cli,
        ["users", *args],
        input=input,
        env={"DATABASE_URL": db_url, "LOGNAME": "root-admin"},
    )


def add(db_url: str, email: str, role: str = "agent", password: str = SECRET) -> Any:
    return run(db_url, "add", email, "--role", role, "--password-stdin", input=password + "\n")


def sign_in(db: Conn, email: str, token: bytes) -> None:
    pdb.record_sign_in(email, True, hashlib.sha256(token).digest(), "127.0.0.1", "test").run(db)


def stored_hash(db: Conn, email: str) -> str:
    return str(
        scalar(db, "select password_hash from pgflow.console_users where email = %s", [email])
    )


def test_add_and_list(db_url: str, db: Conn) -> None:
    assert "no console users" in run(db_url, "list").output
    added = add(db_url, "Dana@Example.com", "manager")
    assert added.exit_code == 0, added.output
    assert "dana@example.com added as manager" in added.output
    assert passwords.verify_password(SECRET, stored_hash(db, "dana@example.com"))
    prompted = run(db_url, "add", "lee@example.com", "--role", "agent", input=f"{SECRET}\n" * 2)
    assert prompted.exit_code == 0, prompted.output
    assert "lee@example.com added as agent" in prompted.output
    assert passwords.verify_password(SECRET, stored_hash(db, "lee@example.com"))
    sign_in(db, "lee@example.com", b"token-1")
    listing = run(db_url, "list")
    assert listing.exit_code == 0, listing.output
    for expected in ("dana@example.com", "manager", "lee@example.com", "active", "2 console user"):
        assert expected in listing.output
    listed = json.loads(run(db_url, "list", "--json").output)
    assert [(u["email"], u["role"], u["sessions"]) for u in listed] == [
        ("dana@example.com", "manager", 0),
        ("lee@example.com", "agent", 1),
    ]
    assert listed[1]["last_seen_at"] is not None
    for result in (added, prompted, listing):
        assert SECRET not in result.output
        assert "scrypt$" not in result.output
    assert all("password_hash" not in u for u in listed)
    assert rows(
        db,
        "select actor, detail ->> 'email' from pgflow.audit_log"
        " where action = 'user_add' order by id",
    ) == [("cli:root-admin", "dana@example.com"), ("cli:root-admin", "lee@example.com")]


def test_refusals(db_url: str, db: Conn) -> None:
    assert add(db_url, "dana@example.com").exit_code == 0
    duplicate = add(db_url, "dana@example.com", "admin")
    assert duplicate.exit_code == 1
    assert "error: a console user dana@example.com exists already" in duplicate.output
    bad_role = add(db_url, "lee@example.com", "boss")
    assert bad_role.exit_code == 1
    assert "error: 'boss' is not a role; use one of: agent, manager, admin" in bad_role.output
    weak = add(db_url, "lee@example.com", password="short")
    assert weak.exit_code == 1
    assert "error: password refused: a password has at least 10 characters" in weak.output
    no_input = run(db_url, "add", "lee@example.com", "--role", "agent", "--password-stdin")
    assert no_input.exit_code == 1
    assert "stdin is empty" in no_input.output
    not_email = add(db_url, "lee")
    assert not_email.exit_code == 1
    assert "error: lee is not an email address" in not_email.output
    unknown = run(db_url, "disable", "nobody@example.com")
    assert unknown.exit_code == 1
    assert "error: no console user nobody@example.com" in unknown.output
    assert scalar(db, "select count(*) from pgflow.console_users") == 1
    assert scalar(db, "select role from pgflow.console_users") == "agent"


def test_disable_ends_sessions_and_add_enables_again(db_url: str, db: Conn) -> None:
    assert add(db_url, "dana@example.com").exit_code == 0
    sign_in(db, "dana@example.com", b"token-1")
    sign_in(db, "dana@example.com", b"token-2")
    disabled = run(db_url, "disable", "dana@example.com")
    assert disabled.exit_code == 0, disabled.output
    assert "dana@example.com disabled; 2 session(s) ended" in disabled.output
    assert "disabled" in run(db_url, "list").output
    [user] = json.loads(run(db_url, "list", "--json").output)
    assert user["disabled_at"] is not None
    assert user["sessions"] == 0
    again = add(db_url, "dana@example.com", "admin", "another long secret")
    assert again.exit_code == 0, again.output
    assert "dana@example.com enabled again as admin" in again.output
    assert passwords.verify_password("another long secret", stored_hash(db, "dana@example.com"))


def test_password_and_revoke(db_url: str, db: Conn) -> None:
    assert add(db_url, "dana@example.com").exit_code == 0
    sign_in(db, "dana@example.com", b"token-1")
    new = "a brand new passphrase"
    changed = run(db_url, "password", "dana@example.com", "--password-stdin", input=new + "\n")
    assert changed.exit_code == 0, changed.output
    assert "dana@example.com: new password set; 1 session(s) ended" in changed.output
    assert new not in changed.output
    assert passwords.verify_password(new, stored_hash(db, "dana@example.com"))
    assert not passwords.verify_password(SECRET, stored_hash(db, "dana@example.com"))
    prompted = run(db_url, "password", "dana@example.com", input="third long secret\n" * 2)
    assert prompted.exit_code == 0, prompted.output
    assert passwords.verify_password("third long secret", stored_hash(db, "dana@example.com"))
    before = stored_hash(db, "dana@example.com")
    weak = run(db_url, "password", "dana@example.com", "--password-stdin", input="tiny\n")
    assert weak.exit_code == 1
    assert "password refused: a password has at least 10 characters" in weak.output
    assert stored_hash(db, "dana@example.com") == before
    sign_in(db, "dana@example.com", b"token-2")
    sign_in(db, "dana@example.com", b"token-3")
    revoked = run(db_url, "revoke", "dana@example.com")
    assert revoked.exit_code == 0, revoked.output
    assert "dana@example.com: 2 session(s) ended" in revoked.output
    [user] = json.loads(run(db_url, "list", "--json").output)
    assert (user["sessions"], user["disabled_at"]) == (0, None)
    assert stored_hash(db, "dana@example.com") == before  # the password stays
    assert rows(
        db,
        "select action, detail ->> 'sessions_ended' from pgflow.audit_log"
        " where actor = 'cli:root-admin' and action <> 'user_add' order by id",
    ) == [("user_password", "1"), ("user_password", "0"), ("sessions_revoke", "2")]
