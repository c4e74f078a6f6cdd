"""`pgflow users`: the people who sign in to the web console, and their sessions."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.table import Table

from pgflow import db, passwords
from pgflow.errors import PgflowError

from .common import console, fail, print_json, settings
from .conversations import actor

app = typer.Typer(help="Console users: add, disable, new password, sign out.", no_args_is_help=True)

ROLES = ("agent", "manager", "admin")

_EMAIL_HELP = "The user's email (what they sign in with)."
_STDIN_HELP = "Read the password from the first line of stdin (for scripts) instead of a prompt."


def _password_hash(from_stdin: bool) -> str:
    """The scrypt hash of a new password: typed twice at a hidden prompt, or the first line of
    stdin. A weak password fails here, before anything is stored; the password is never
    printed."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            fail("--password-stdin: stdin is empty; give the password on its first line")
        password = line.rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    try:
        return passwords.hash_password(password)
    except passwords.WeakPassword as exc:
        fail(f"password refused: {exc}")


def _change(email: str, action: str, password_hash: str | None = None) -> dict[str, Any]:
    with db.connect(settings().database_url, application="cli") as conn:
        try:
            return db.change_console_user(email, action, actor(), password_hash).run(conn)
        except PgflowError as exc:
            fail(str(exc))


@app.command()
def add(
    email: str = typer.Argument(..., help=_EMAIL_HELP),
    role: str = typer.Option(
        ...,
        "--role",
        help="agent (the inbox and conversations), manager (also campaigns, dead letters,"
        " alerts) or admin (also users).",
    ),
    password_stdin: bool = typer.Option(False, "--password-stdin", help=_STDIN_HELP),
) -> None:
    """Add a console user with a role and a password (at least 10 characters).

    The password is asked twice at a hidden prompt, or read from stdin with --password-stdin.
    A disabled user added again is enabled with the new role and password."""
    if role not in ROLES:
        fail(f"{role!r} is not a role; use one of: {', '.join(ROLES)}")
    password_hash = _password_hash(password_stdin)
    with db.connect(settings().database_url, application="cli") as conn:
        try:
            result = db.add_console_user(email, role, password_hash, actor()).run(conn)
        except PgflowError as exc:
            fail(str(exc))
    verb = "added" if result["result"] == "added" else "enabled again"
    console.print(f"{result['email']} {verb} as {result['role']}", highlight=False)


@app.command()
def disable(email: str = typer.Argument(..., help=_EMAIL_HELP)) -> None:
    """Disable a console user: they cannot sign in, and their sessions end at once.

    `users add` with the same email enables them again."""
    result = _change(email, "disable")
    console.print(
        f"{result['email']} disabled; {result['sessions_ended']} session(s) ended",
        highlight=False,
    )


@app.command()
def password(
    email: str = typer.Argument(..., help=_EMAIL_HELP),
    password_stdin: bool = typer.Option(False, "--password-stdin", help=_STDIN_HELP),
) -> None:
    """Give a console user a new password: their sessions end, they sign in again with it.

    The password is asked twice at a hidden prompt, or read from stdin with --password-stdin."""
    result = _change(email, "password", _password_hash(password_stdin))
    console.print(
        f"{result['email']}: new password set; {result['sessions_ended']} session(s) ended",
        highlight=False,
    )


@app.command()
def revoke(email: str = typer.Argument(..., help=_EMAIL_HELP)) -> None:
    """Sign a console user out everywhere: every session of theirs ends.

    Their password stays; they can sign in again."""
    result = _change(email, "revoke")
    console.print(
        f"{result['email']}: {result['sessions_ended']} session(s) ended", highlight=False
    )


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Console users: email, role, status, when last seen, and live sessions."""
    with db.connect(settings().database_url, application="cli") as conn:
        rows = db.console_user_list().run(conn)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no console users; add one with `pgflow users add`", highlight=False)
        return
    table = Table()
    for column in ("email", "role", "status", "last seen", "sessions"):
        table.add_column(column)
    for r in rows:
        status = f"disabled {_when(r['disabled_at'])}" if r["disabled_at"] else "active"
        table.add_row(r["email"], r["role"], status, _when(r["last_seen_at"]), str(r["sessions"]))
    console.print(table)
    console.print(f"{len(rows)} console user(s)", highlight=False)


def _when(value: Any) -> str:
    return str(value)[:16].replace("T", " ") if value else "-"
