"""Shared set-up for the benchmarks: a scratch database on the local cluster, results files."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import psycopg

from pgflow import migrations
from tests.conftest import project_url, with_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def fresh_database(name: str) -> str:
    """Drop and create `name`, migrate it, return its URL."""
    server = project_url()
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
