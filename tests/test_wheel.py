"""What users install is the wheel: built from this checkout, installed (not editable) into
a fresh venv, and run from a folder outside the checkout: every module imports, `pgflow db
migrate` and `pgflow status` work against a real database, `pgflow worker` and `pgflow serve`
start until ready and stop on SIGTERM with exit code 0, and `pgflow demo` says in one line
what it needs when it has neither a database nor PostgreSQL to start one."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest

from pgflow import migrations
from tests.processes import PgflowProcess, ServeProcess, clean_env, wait_until

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def source_modules() -> set[str]:
    """Every module of the checkout, named as installed (cli/ is pgflow.cli)."""
    names = {"pgflow", "pgflow.cli"}
    for folder, package in ((ROOT / "pgflow", "pgflow"), (ROOT / "cli", "pgflow.cli")):
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.add(".".join([package, *parts]))
    return names


def build_and_install(base: Path) -> Path:
    """Build the wheel of this checkout and install it into a fresh venv under `base` with
    the pinned dependencies; the venv's bin/ folder. tests/conftest.py starts this in a
    thread when the run includes this module, so the install overlaps the other tests."""
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        cwd=base,
    )
    wheels = list(dist.glob("pgflow_sms-*.whl"))
    assert len(wheels) == 1, wheels
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q"]
    lock = str(ROOT / "requirements.lock")
    subprocess.run([*pip, "-c", lock, str(wheels[0])], check=True, capture_output=True, cwd=base)
    return env_dir / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh venv with the wheel installed (pinned dependencies)."""
    from tests.conftest import wheel_installing

    started = wheel_installing()
    if started is not None:
        return started.result(timeout=600)
    return build_and_install(tmp_path_factory.mktemp("wheel"))


def run(bin_dir: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "pgflow"), *args],
        cwd=cwd,
        env=clean_env(COLUMNS="200", PYTHONPATH="", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_wheel_holds_every_module_and_imports_them_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    script = (
        "import importlib, json, pkgutil, pgflow, pgflow.cli\n"
        "names = {'pgflow', 'pgflow.cli'}\n"
        "for m in pkgutil.walk_packages(pgflow.__path__, 'pgflow.'):\n"
        "    names.add(m.name)\n"
        "for name in sorted(names):\n"
        "    importlib.import_module(name)\n"
        "from importlib.util import find_spec\n"
        "print(json.dumps({'file': pgflow.__file__, 'modules': sorted(names),"
        " 'cli': find_spec('cli') is not None}))\n"
    )
    out = subprocess.run(
        [str(installed / "python"), "-c", script],
        cwd=tmp_path,
        env=clean_env(LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONPATH=""),
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(found["file"]).is_relative_to(installed.parent), found["file"]
    assert set(found["modules"]) == source_modules()
    assert found["cli"] is False  # the CLI is pgflow.cli: no top-level `cli` installed


def test_the_installed_commands_run_from_outside_the_checkout(
    installed: Path, tmp_path: Path, db_url: str
) -> None:
    from pgflow import __version__

    version = run(installed, tmp_path, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"pgflow {__version__}"

    migrate = run(installed, tmp_path, "db", "migrate", DATABASE_URL=db_url)
    assert migrate.returncode == 0, migrate.stderr
    status = run(installed, tmp_path, "db", "status", DATABASE_URL=db_url)
    assert status.returncode == 0, status.stderr
    assert f"applied  {migrations.migration_ids()[-1]}" in status.stdout, status.stdout

    command = [str(installed / "pgflow")]
    env = {"RETELL_API_KEY": "key_wheel", "RETELL_BASE_URL": "http://127.0.0.1:9", "PYTHONPATH": ""}
    worker = PgflowProcess(db_url, "worker", env=env, command=command, cwd=tmp_path)
    serve = ServeProcess(
        db_url,
        env={"PGFLOW_LEAD_TOKEN": "t", "PGFLOW_CONSOLE_SECRET": "w" * 32, "PYTHONPATH": ""},
        command=command,
        cwd=tmp_path,
    )
    try:
        worker.started()
        serve.started()
        ready = wait_until(
            lambda: httpx.get(serve.url + "/readyz", timeout=5).status_code == 200,
            what="/readyz answers 200",
        )
        assert ready
        # the console's templates and static files ship in the wheel
        sign_in = httpx.get(serve.url + "/console/sign-in", timeout=5)
        assert sign_in.status_code == 200, sign_in.text[:500]
        assert "<h1>Sign in</h1>" in sign_in.text
        style = httpx.get(serve.url + "/console/static/console.css", timeout=5)
        assert style.status_code == 200
        assert httpx.get(serve.url + "/console/static/console.js", timeout=5).status_code == 200
        health = run(installed, tmp_path, "status", DATABASE_URL=db_url)
        assert health.returncode == 0, health.stdout + health.stderr
        worker_line = next(line for line in health.stdout.splitlines() if " worker " in line)
        assert worker_line.startswith("ok"), worker_line
        assert "none alive" not in worker_line, worker_line
        assert serve.terminate() == 0, serve.output()
        assert worker.terminate() == 0, worker.output()
    finally:
        serve.stop()
        worker.stop()


def test_the_installed_demo_says_what_it_needs(installed: Path, tmp_path: Path) -> None:
    # no DATABASE_URL, and PostgreSQL's binaries out of reach: one line, non-zero
    demo = run(installed, tmp_path, "demo", PGFLOW_PG_BINDIR=str(tmp_path / "none"))
    assert demo.returncode != 0
    lines = [line for line in demo.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, demo.stderr
    assert "DATABASE_URL" in lines[0]
