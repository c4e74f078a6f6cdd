"""Shared set-up for the benchmarks: a scratch database on the local cluster, results files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from pgflow import migrations

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        out = subprocess.run(
            [str(ROOT / "scripts" / "db.sh"), "up"], check=True, capture_output=True, text=True
        )
        url = out.stdout.strip().splitlines()[-1]
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def fresh_database(name: str) -> str:
    """Drop and create `name`, migrate it, return its URL."""
    server = server_url()
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    url = with_database(server, name)
    migrations.migrate(url)
    return url


def record(name: str, result: dict[str, Any]) -> Path:
    """Write the result as JSON under bench/results/ with the machine it ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        **result,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path
