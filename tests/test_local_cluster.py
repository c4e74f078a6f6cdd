"""scripts/db.sh from a checkout in a private directory (mode 700, like /root): the postgres
OS user cannot traverse it, so the cluster lives under /var/tmp behind the .pgflow link,
and every path postgres is handed must be the resolved one."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the private-home case is root's"),
]


@pytest.fixture
def private_checkout(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    checkout = home / "pgflow-sms"
    shutil.copytree(ROOT / "scripts", checkout / "scripts")
    home.chmod(0o700)
    yield checkout
    link = checkout / ".pgflow"
    if link.is_symlink():
        target = link.resolve()
        db_sh(checkout, "down")
        shutil.rmtree(target, ignore_errors=True)


def db_sh(checkout: Path, *args: str, port: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if port is not None:
        env["PGFLOW_PG_PORT"] = str(port)
    return subprocess.run(
        [str(checkout / "scripts" / "db.sh"), *args],
        cwd=checkout,  # the caller stands inside the private directory
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cluster_up_and_down_from_a_private_directory(private_checkout: Path) -> None:
    checkout = private_checkout
    assert (
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-x", str(checkout)], check=False
        ).returncode
        != 0
    ), "the test directory must be private to root"
    port = free_port()

    up = db_sh(checkout, "up", port=port)
    assert up.returncode == 0, up.stderr
    url = up.stdout.strip().splitlines()[-1]
    assert url == f"postgresql://postgres@127.0.0.1:{port}/pgflow"
    link = checkout / ".pgflow"
    assert link.is_symlink()
    assert str(link.resolve()).startswith("/var/tmp/pgflow-sms-")
    assert "Permission denied" not in up.stderr
    with psycopg.connect(url) as conn:
        preload = conn.execute("show shared_preload_libraries").fetchone()
        assert preload == ("pg_cron",)

    again = db_sh(checkout, "up")  # idempotent: the port is remembered, the cluster reused
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == url
    assert db_sh(checkout, "url").stdout.strip() == url

    down = db_sh(checkout, "down")
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stderr
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()
