"""The committed schema snapshot (sql/schema.sql): pg_dump of schema pgflow, normalised.

`python -m tests.snapshot` migrates a scratch database and rewrites the snapshot."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent.parent / "sql" / "schema.sql"


def schema_dump(url: str) -> str:
    """pg_dump --schema-only of schema pgflow without yoyo's bookkeeping, normalised."""
    pg_dump = shutil.which("pg_dump") or "/usr/lib/postgresql/15/bin/pg_dump"
    out = subprocess.run(
        [
            pg_dump,
            "--schema-only",
            "--schema=pgflow",
            "--no-owner",
            "--no-privileges",
            "--exclude-table=pgflow._yoyo*",
            "--exclude-table=pgflow.yoyo_lock",
            "--dbname",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return normalise(out)


def normalise(dump: str) -> str:
    """Drop comments, blank lines, psql meta-commands and session SETs (they vary by version)."""
    lines = []
    for line in dump.splitlines():
        if not line.strip() or line.startswith(("--", "\\")):
            continue
        if re.match(r"^(SET |SELECT pg_catalog\.set_config)", line):
            continue
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


def main() -> None:
    from pgflow.config import Settings
    from tests.conftest import scratch_database

    with scratch_database(Settings.from_env().database_url, "pgflow_snap") as url:
        SNAPSHOT.write_text(schema_dump(url))
    sys.stdout.write(f"wrote {SNAPSHOT}\n")


if __name__ == "__main__":
    main()
