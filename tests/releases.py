"""Released migrations: hash pins and schema dumps of each release.

A migration file that has landed never changes (sql/README.md). Two things hold that:
- `sql/migrations.lock` pins the SHA-256 of every released migration file (`sha256sum`
  format, so `cd sql/migrations && sha256sum -c ../migrations.lock` checks it by hand);
- `tests/data/releases/<last migration>.sql` is a dump of a database migrated to that
  release (schema pgflow with yoyo's bookkeeping), so a test can upgrade a database built
  from that earlier migration set to head and compare it with a fresh build.

`python -m tests.releases cut` (`make release-migrations`) dumps head as a new release and
pins every migration not yet pinned; it never changes a pin that exists."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "sql" / "migrations"
PINS = ROOT / "sql" / "migrations.lock"
RELEASES = ROOT / "tests" / "data" / "releases"


def pg_bin(name: str) -> str:
    return shutil.which(name) or f"/usr/lib/postgresql/15/bin/{name}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_pins() -> dict[str, str]:
    """file name -> pinned SHA-256."""
    pins: dict[str, str] = {}
    for line in PINS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            pins[name.strip()] = digest
    return pins


def release_dumps() -> list[Path]:
    return sorted(RELEASES.glob("*.sql"))


def full_dump(url: str, *, schema_only: bool = True) -> str:
    """pg_dump of schema pgflow with privileges (grants are part of a release)."""
    args = [pg_bin("pg_dump"), "--schema=pgflow", "--no-owner", "--dbname", url]
    if not schema_only:  # who applied them and from which host is not part of a release
        args.append("--exclude-table-data=pgflow._yoyo_log")
    if schema_only:
        args[1:1] = [
            "--schema-only",
            "--exclude-table=pgflow._yoyo*",
            "--exclude-table=pgflow.yoyo_lock",
        ]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def restorable(dump: str) -> str:
    """A dump psql of any 15.x restores: without the per-dump `\\restrict` key lines."""
    return "".join(
        line
        for line in dump.splitlines(keepends=True)
        if not line.startswith(("\\restrict", "\\unrestrict"))
    )


def restore(url: str, dump: Path) -> None:
    subprocess.run(
        [pg_bin("psql"), "-q", "-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(dump)],
        check=True,
        capture_output=True,
        text=True,
    )


def cut() -> None:
    """Dump head as a release and pin every migration file not pinned yet."""
    from pgflow import migrations
    from pgflow.config import Settings
    from tests.conftest import scratch_database

    with scratch_database(Settings.from_env().database_url, "pgflow_rel") as url:
        head = migrations.migration_ids()[-1]
        RELEASES.mkdir(parents=True, exist_ok=True)
        target = RELEASES / f"{head}.sql"
        target.write_text(restorable(full_dump(url, schema_only=False)))
    pins = read_pins() if PINS.exists() else {}
    added = []
    with PINS.open("a") as out:
        if not pins:
            out.write("# SHA-256 of every released migration; never edit a line (sql/README.md)\n")
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.name not in pins:
                out.write(f"{sha256(path)}  {path.name}\n")
                added.append(path.name)
    sys.stdout.write(f"wrote {target.relative_to(ROOT)}; pinned {len(added)} file(s)\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["cut"]:
        sys.exit("usage: python -m tests.releases cut")
    cut()
