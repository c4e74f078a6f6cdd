"""Where the demo runs: its files and its database.

Everything the demo reads at run time is package data, so an installed wheel has it too:
the campaign file beside this module and the local cluster's script, pgflow/localdb.sh
(scripts/db.sh in a checkout is a link to it). The database is DATABASE_URL, else that
script's throwaway PostgreSQL + pg_cron, whose state folder is the checkout's .pgflow/ when
the package runs from a checkout (as the tests and `make` use it) and otherwise a per-user
data folder, ${XDG_DATA_HOME:-~/.local/share}/pgflow-sms."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from pgflow.errors import PgflowError

PACKAGE = Path(__file__).resolve().parent  # pgflow/demo
CAMPAIGN_FILE = PACKAGE / "solar-q4-demo.yaml"
DB_SCRIPT = PACKAGE.parent / "localdb.sh"
NEEDS = 3  # localdb.sh's exit status: PostgreSQL + pg_cron missing, and not installable here
NEEDS_TEXT = (
    "PostgreSQL 15 with pg_cron is needed: set DATABASE_URL to a server that preloads "
    "pg_cron, or install postgresql-15 and postgresql-15-cron"
)


class DemoError(PgflowError):
    code = "demo"


def checkout(package: Path = PACKAGE) -> Path | None:
    """The source checkout the package runs from (its pyproject.toml and scripts/db.sh),
    or None: an installed wheel, in site-packages."""
    root = package.parent.parent
    if (root / "pyproject.toml").is_file() and (root / "scripts" / "db.sh").exists():
        return root
    return None


def state_dir(environ: Mapping[str, str], package: Path = PACKAGE) -> Path:
    """The local cluster's state folder: the checkout's .pgflow/, else the user's data
    folder (XDG_DATA_HOME when it is an absolute path, else ~/.local/share)."""
    root = checkout(package)
    if root is not None:
        return root / ".pgflow"
    data = environ.get("XDG_DATA_HOME", "").strip()
    base = Path(data) if data and Path(data).is_absolute() else Path.home() / ".local" / "share"
    return base / "pgflow-sms"


def shown(path: Path) -> str:
    """A packaged file as the reader finds it: pgflow/demo/..., installed or not."""
    return str(path.relative_to(PACKAGE.parent.parent))


def given_url() -> str:
    return os.environ.get("DATABASE_URL", "").strip()


def start_local() -> str:
    """The URL of the local cluster of pgflow/localdb.sh, started (PostgreSQL and pg_cron
    installed first when missing and this is root with apt); for when DATABASE_URL is unset."""
    bash = shutil.which("bash")
    if bash is None:
        raise DemoError(f"{NEEDS_TEXT} (and bash, which starts a local one)")
    if not DB_SCRIPT.is_file():
        raise DemoError(f"set DATABASE_URL ({shown(DB_SCRIPT)}, which starts one, is missing)")
    env = {**os.environ, "PGFLOW_STATE_DIR": str(state_dir(os.environ))}
    out = subprocess.run(
        [bash, str(DB_SCRIPT), "up"], env=env, capture_output=True, text=True, check=False
    )
    if out.returncode == NEEDS:
        lines = out.stderr.strip().splitlines() or [NEEDS_TEXT]
        raise DemoError(lines[-1].removeprefix("db: "))
    if out.returncode != 0:
        raise DemoError(f"the local database did not start: {out.stderr.strip()[-500:]}")
    return out.stdout.strip().splitlines()[-1]


def stop_command() -> str:
    """How the reader stops the local cluster afterwards."""
    root = checkout()
    if root is not None:
        return "scripts/db.sh down" if Path.cwd() == root else f"{root}/scripts/db.sh down"
    state = shlex.quote(str(state_dir(os.environ)))
    return f"PGFLOW_STATE_DIR={state} bash {shlex.quote(str(DB_SCRIPT))} down"


def run_dir() -> Path:
    """This run's log folder: under the cluster's state folder when there is one."""
    state = state_dir(os.environ)
    base = state if state.exists() else Path(tempfile.gettempdir())
    path = base / "demo" / time.strftime("%Y%m%d-%H%M%S")
    path.mkdir(parents=True, exist_ok=True)
    return path
