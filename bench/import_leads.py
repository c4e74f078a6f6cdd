"""`pgflow leads import` of 100,000 generated leads, set-based, next to a bare COPY of the
same file into a plain table in the same run, and the row-by-row path on a sample.

    .venv/bin/python -m bench.import_leads [--leads 100000] [--sample 2000] [--quick]

One fresh database (track_functions = all). In order:
- bare: the CSV file COPYed as it is into a table of text columns with no index or
  constraint (psycopg COPY, the file streamed in 64 kB blocks): the floor of any load;
- import: `pgflow leads import FILE --campaign bench` run in this process through typer
  (the code the command runs: the file read and mapped, phones normalised, chunks COPYed
  to the staging table, one pgflow.import_leads() per chunk); the campaign's step 1 has
  delay 0 and its window is always open, so every lead gets its first SMS queued (a
  message and a send_sms job), as the webhook does;
- python: the same file only read, mapped and prepared (phones normalised, payloads as
  JSON) with no database: the Python share of the import;
- row_by_row: `--row-by-row` on a sample of new numbers.
Reported: leads/s of each, the ratio import/bare, import/row_by_row, what the import left
(checked against the file), and the functions with the most self time during the import
(pg_stat_user_functions). Goals: >= 5,000 leads/s and >= 0.1x the bare COPY."""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import typer
from typer.testing import CliRunner

from bench import queries
from bench.common import drop_database, fresh_database, record
from pgflow import db, intake
from pgflow import leads as lead_import
from pgflow.cli import leads as leads_cli
from tests.conftest import any_hour, project_url, with_database
from tests.factories import campaign_doc

NAME = "pgflow_bench_import"
COLUMNS = [
    "phone",
    "first_name",
    "last_name",
    "email",
    "state",
    "plan",
    "consent_text",
    "consent_at",
]
AREAS = ["212", "310", "415", "646", "718", "917", "303", "503", "312", "617", "206", "404"]
SAMPLE_AREAS = ["202", "305", "512", "602"]
STATES = ["NY", "CA", "california", "TX", "", "FL", "wa"]


def write_csv(path: Path, n: int, areas: list[str], seed: int) -> None:
    """n leads with distinct valid US numbers, names, an email, a state, a plan attribute
    and, for half of them, consent."""
    rng = random.Random(seed)
    seen: set[str] = set()
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        while len(seen) < n:
            number = f"{rng.choice(areas)}{rng.randint(201, 989)}{rng.randint(0, 9999):04d}"
            if number[3:6].endswith("11") or number in seen:
                continue
            seen.add(number)
            i = len(seen)
            consent = i % 2 == 0
            out.writerow(
                [
                    f"({number[:3]}) {number[3:6]}-{number[6:]}",
                    f"Lead{i}",
                    "Bench",
                    f"lead{i}@example.com",
                    rng.choice(STATES),
                    rng.choice(["gold", "silver"]),
                    "I agree to texts" if consent else "",
                    "2026-11-20T10:00:00Z" if consent else "",
                ]
            )


def bare_copy(url: str, path: Path) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        queries.create_plain_leads(COLUMNS).run(conn)
        t0 = time.perf_counter()
        with (
            path.open("rb") as f,
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(queries.copy_plain_leads()) as cp,
        ):
            while block := f.read(65536):
                cp.write(block)
        return time.perf_counter() - t0


def run_command(url: str, path: Path, *flags: str) -> tuple[float, dict[str, Any]]:
    cli = typer.Typer()
    cli.add_typer(leads_cli.app, name="leads")
    args = ["leads", "import", str(path), "--campaign", "bench", "--json", *flags]
    t0 = time.perf_counter()
    result = CliRunner().invoke(cli, args, env={"DATABASE_URL": url})
    seconds = time.perf_counter() - t0
    assert result.exit_code == 0, result.output
    return seconds, json.loads(result.stdout)


def python_only(path: Path) -> float:
    """The file read, mapped and prepared as the import prepares it, without a database."""
    t0 = time.perf_counter()
    with lead_import.LeadFile(path) as lead_file:
        for lead in lead_file.rows():
            prepared = intake.prepare(lead.payload("bench", "csv:x"), source="csv:x")
            lead_import.payload_text(prepared)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="10,000 leads, a 500-row sample")
    args = parser.parse_args()
    n, sample = (10_000, 500) if args.quick else (args.leads, args.sample)

    server = project_url()
    url = fresh_database(NAME)
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as conn:
        queries.track_all_functions(NAME).run(conn)
    with psycopg.connect(url, autocommit=True) as conn:
        db.apply_campaigns(campaign_doc("bench", window_start="00:00", window_end="24:00")).run(
            conn
        )
        any_hour(url)  # the rules' hours too: any hour of the run
    try:
        with tempfile.TemporaryDirectory(prefix="pgflow-import-") as tmp:
            big, small = Path(tmp) / "leads.csv", Path(tmp) / "sample.csv"
            write_csv(big, n, AREAS, seed=1)
            write_csv(small, sample, SAMPLE_AREAS, seed=2)
            size_mb = big.stat().st_size / 1e6
            print(f"{n:,} leads, {size_mb:.1f} MB", flush=True)

            bare_s = bare_copy(url, big)
            print(f"bare COPY: {bare_s:.2f} s", flush=True)
            with psycopg.connect(url, autocommit=True) as conn:
                queries.clear_stats_snapshot().run(conn)
                before = queries.function_stats().run(conn)
            import_s, summary = run_command(url, big)
            print(f"import: {import_s:.2f} s", flush=True)
            with psycopg.connect(url, autocommit=True) as conn:
                after = queries.function_stats().run(conn)
            python_s = python_only(big)
            print(f"python share: {python_s:.2f} s", flush=True)
            rbr_s, rbr_summary = run_command(url, small, "--row-by-row")
            print(f"row by row: {rbr_s:.2f} s for {sample:,}", flush=True)
            with psycopg.connect(url, autocommit=True) as conn:
                totals = queries.import_totals().run(conn)
    finally:
        drop_database(NAME)

    assert summary["created"] == n, summary
    assert summary["rejected"] == 0, summary
    assert rbr_summary["created"] == sample, rbr_summary
    # step 1 queued at once, or deferred by a state's rules (their quiet hours)
    assert totals["enrollments"] == n + sample, totals
    assert totals["queued"] == totals["jobs"], totals
    functions = {
        name: {
            "calls": calls - before.get(name, (0, 0.0, 0.0))[0],
            "total_ms": round(total - before.get(name, (0, 0.0, 0.0))[1], 1),
            "self_ms": round(own - before.get(name, (0, 0.0, 0.0))[2], 1),
        }
        for name, (calls, total, own) in after.items()
    }
    top = dict(sorted(functions.items(), key=lambda kv: -kv[1]["self_ms"])[:12])
    result = {
        "leads": n,
        "file_mb": round(size_mb, 1),
        "chunk_rows": lead_import.CHUNK_ROWS,
        "bare_copy_s": round(bare_s, 3),
        "bare_copy_rows_per_s": round(n / bare_s, 1),
        "import_s": round(import_s, 3),
        "import_leads_per_s": round(n / import_s, 1),
        "ratio_import_to_bare": round(bare_s / import_s, 3),
        "python_prepare_s": round(python_s, 3),
        "python_share": round(python_s / import_s, 3),
        "row_by_row_sample": sample,
        "row_by_row_s": round(rbr_s, 3),
        "row_by_row_leads_per_s": round(sample / rbr_s, 1),
        "ratio_import_to_row_by_row": round((n / import_s) / (sample / rbr_s), 2),
        "left": totals,
        "functions_by_self_time": top,
        "goals": {"leads_per_s": 5000, "ratio_to_bare": 0.1},
    }
    record("import_quick" if args.quick else "import", result)


if __name__ == "__main__":
    main()
