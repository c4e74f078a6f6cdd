"""Test harness: one migrated template database per run, a fresh clone per test.

DATABASE_URL names the server (and, for pg_cron checks, the project database) when given;
otherwise `scripts/db.sh up` starts the local throwaway cluster under .pgflow/."""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import queue
import shutil
import subprocess
import tempfile
import threading
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
        _ahead[(server_url, name)] = _ClonesAhead(server_url, name)
        yield name
    finally:
        ahead = _ahead.pop((server_url, name), None)
        if ahead is not None:
            ahead.close()
        with admin(server_url) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def _new_clone(server_url: str, template: str) -> str:
    name = f"pgflow_t_{os.getpid()}_{next(_counter)}"
    with admin(server_url) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}" template "{template}"')
    return name


class _ClonesAhead:
    """Clones of the template made in a thread while the tests run: CREATE DATABASE copies
    the template's ~10 MB (0.2-0.6 s here), which then overlaps the test before instead of
    adding to it. A clone that cannot be made (a test restarting the cluster) is simply
    made again, or by the test itself."""

    def __init__(self, server_url: str, template: str, ahead: int = 2) -> None:
        self.server_url, self.template = server_url, template
        self.ready: queue.Queue[str] = queue.Queue(maxsize=ahead)
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._run, name="clones-ahead", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.closing.is_set():
            try:
                name = _new_clone(self.server_url, self.template)
            except psycopg.Error:
                self.closing.wait(0.2)
                continue
            while not self.closing.is_set():
                try:
                    self.ready.put(name, timeout=0.2)
                    break
                except queue.Full:
                    continue
            else:
                self._drop(name)

    def take(self) -> str | None:
        try:
            return self.ready.get(timeout=15)
        except queue.Empty:
            return None

    def _drop(self, name: str) -> None:
        with contextlib.suppress(psycopg.Error):
            drop_database(self.server_url, name)

    def close(self) -> None:
        self.closing.set()
        self.thread.join(30)
        while True:
            try:
                self._drop(self.ready.get_nowait())
            except queue.Empty:
                return


_ahead: dict[tuple[str, str], _ClonesAhead] = {}


def create_clone(server_url: str, template: str) -> str:
    """A fresh clone of the template: one made ahead when there is one, else made now."""
    ahead = _ahead.get((server_url, template))
    name = ahead.take() if ahead is not None else None
    return name if name is not None else _new_clone(server_url, template)


def drop_database(server_url: str, name: str) -> None:
    with admin(server_url) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def db_url(server_url: str, template_db: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh, migrated database of this test's own (for a test marked real_clock,
    with the state rules' hours open all day: see any_hour)."""
    name = create_clone(server_url, template_db)
    url = with_database(server_url, name)
    try:
        if request.node.get_closest_marker("real_clock") is not None:
            any_hour(url)
        yield url
    finally:
        drop_database(server_url, name)


def any_hour(url: str) -> None:
    """Open the state rules' hours (the federal 8-21 and every state's) all day, every day,
    in one test's database. For tests of the machinery that run on the real clock (worker
    processes, the web server, a browser): they must not pass or fail by the hour the suite
    starts. The hours themselves are tested on an injected clock (test_state_rules.py,
    test_send_window.py), where the rules are as shipped."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("update pgflow.state_windows set opens = time '00:00', closes = time '24:00'")


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


# --- the wheel, built and installed while the other tests run ------------------------------

_wheel: tuple[Path, concurrent.futures.Future[Path]] | None = None


def wheel_installing() -> concurrent.futures.Future[Path] | None:
    """The install tests/test_wheel.py needs, started at collection (None: not started)."""
    return None if _wheel is None else _wheel[1]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    global _wheel
    if _wheel is None and any(item.nodeid.startswith("tests/test_wheel.py") for item in items):
        from tests.test_wheel import build_and_install

        base = Path(tempfile.mkdtemp(prefix="pgflow-wheel-"))
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wheel")
        _wheel = (base, pool.submit(build_and_install, base))
        pool.shutdown(wait=False)


def pytest_sessionfinish() -> None:
    if _wheel is not None:
        base, future = _wheel
        with contextlib.suppress(Exception):
            future.result(timeout=600)
        shutil.rmtree(base, ignore_errors=True)
