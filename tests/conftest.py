"""Test harness: one migrated template database per run, a fresh clone per test.

DATABASE_URL names the server (and, for pg_cron checks, the project database) when given;
otherwise `scripts/db.sh up` starts the local throwaway cluster under .pgflow/."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from pgflow import migrations

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """The URL of a new database migrated to head, dropped afterwards (for the make targets
    that read one: schema-snapshot, release-migrations, migration, sql-check)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin_url = with_database(server_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        url = with_database(server_url, name)
        migrations.migrate(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def project_url() -> str:
    """DATABASE_URL, or the local cluster's (started when needed by scripts/db.sh)."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        out = subprocess.run(
            [str(ROOT / "scripts" / "db.sh"), "up"], check=True, capture_output=True, text=True
        )
        url = out.stdout.strip().splitlines()[-1]
    return url


def is_local_cluster(url: str | None) -> bool:
    """True when `url` (None: no DATABASE_URL) is the throwaway cluster of scripts/db.sh,
    which a test may restart; never a server someone else gave us."""
    if not url:
        return True
    if not (ROOT / ".pgflow").exists():
        return False
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    out = subprocess.run(
        [str(ROOT / "scripts" / "db.sh"), "url"], capture_output=True, text=True, env=env
    )
    local = urlsplit(out.stdout.strip())
    given = urlsplit(url)
    return out.returncode == 0 and (local.hostname, local.port) == (given.hostname, given.port)


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the project database on the test server."""
    return project_url()


def admin(server_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(with_database(server_url, "postgres"), autocommit=True)


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """A database migrated once per run; each test clones it."""
    name = f"pgflow_tmpl_{uuid.uuid4().hex[:10]}"
    with admin(server_url) as conn:
        conn.execute(f'create database "{name}"')
    url = with_database(server_url, name)
    try:
        migrations.migrate(url)
        yield name
    finally:
        with admin(server_url) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def create_clone(server_url: str, template: str) -> str:
    name = f"pgflow_t_{os.getpid()}_{next(_counter)}"
    with admin(server_url) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}" template "{template}"')
    return name


def drop_database(server_url: str, name: str) -> None:
    with admin(server_url) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """URL of a fresh, migrated database of this test's own."""
    name = create_clone(server_url, template_db)
    try:
        yield with_database(server_url, name)
    finally:
        drop_database(server_url, name)


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """URL of a fresh database with no schema at all."""
    name = f"pgflow_e_{os.getpid()}_{next(_counter)}"
    with admin(server_url) as conn:
        conn.execute(f'create database "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        drop_database(server_url, name)


@pytest.fixture
def login_url(db: psycopg.Connection[Any], db_url: str) -> Iterator[Callable[[str], str]]:
    """A factory: the URL of a new login that is a member of a pgflow role (dropped after)."""
    made: list[str] = []

    def make(role: str) -> str:
        user = f"t_{role}_{os.getpid()}_{len(made)}"
        db.execute(f'create role "{user}" login in role {role}')
        made.append(user)
        parts = urlsplit(db_url)
        host = parts.netloc.rsplit("@", 1)[-1]
        url = urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, ""))
        try:
            psycopg.connect(url).close()
        except psycopg.OperationalError as exc:
            pytest.skip(f"the test server does not let a new login in: {exc}")
        return url

    yield make
    for user in made:
        db.execute(f'drop role if exists "{user}"')


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to this test's database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def module_db(server_url: str, template_db: str) -> Iterator[psycopg.Connection[Any]]:
    """One migrated database shared by a module's tests: for pure functions only (tests
    that write must use `db`)."""
    name = create_clone(server_url, template_db)
    try:
        with psycopg.connect(with_database(server_url, name), autocommit=True) as conn:
            yield conn
    finally:
        drop_database(server_url, name)
