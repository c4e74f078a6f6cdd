"""Shared set-up for the benchmarks: a scratch database on the local cluster, results files,
subprocesses that announce `READY <url>`, and what /proc says about a process (peak RSS,
CPU seconds, the CPU of one database's backends)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg

from bench import queries
from pgflow import migrations
from tests.conftest import project_url, with_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def fresh_database(name: str) -> str:
    """Drop and create `name`, migrate it, return its URL."""
    server = project_url()
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as conn:
        queries.drop_database(name).run(conn)
        queries.create_database(name).run(conn)
    url = with_database(server, name)
    migrations.migrate(url)
    return url


def drop_database(name: str) -> None:
    server = project_url()
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as conn:
        queries.drop_database(name).run(conn)


def record(name: str, result: dict[str, Any]) -> Path:
    """Write the result as JSON under bench/results/ with the machine it ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": command(),
        "schema": schema_fingerprint()
        | ({"changed_during_run": True} if schema_fingerprint() != SCHEMA_AT_START else {}),
        **result,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


def schema_fingerprint() -> dict[str, Any]:
    """Which SQL was measured: the migrations' count, the last one, a hash of their text
    (sql/migrations changes while the engine is worked on)."""
    files = sorted((ROOT / "sql" / "migrations").glob("*.sql"))
    digest = hashlib.sha256()
    for path in files:
        if not path.name.endswith(".rollback.sql"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    applied = [p.stem for p in files if not p.name.endswith(".rollback.sql")]
    return {
        "migrations": len(applied),
        "last": applied[-1] if applied else None,
        "sha256_12": digest.hexdigest()[:12],
    }


SCHEMA_AT_START = schema_fingerprint()


def command() -> str:
    """How this benchmark was started: `python -m bench.<module> <args>`."""
    return " ".join(["python -m bench." + Path(sys.argv[0]).stem, *sys.argv[1:]])


def percentiles(values: Sequence[float], *points: int) -> dict[str, float]:
    """{"p50": ..., "p95": ...} in the values' unit, rounded to 0.1."""
    if len(values) < 2:
        only = float(values[0]) if values else float("nan")
        return {f"p{p}": round(only, 1) for p in points}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {f"p{p}": round(cuts[p - 1], 1) for p in points}


# --- /proc ----------------------------------------------------------------------------------


def status_kb(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmHWM: peak RSS, VmRSS: current RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_mb(pid: int) -> float:
    return round(status_kb(pid, "VmHWM") / 1024, 1)


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds of a process (and of its children it has waited for)."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


class DatabaseCpu:
    """CPU seconds spent by the PostgreSQL backends connected to one database (the machine is
    shared: other databases of the cluster may be busy). `seconds()` sums, over the backends
    alive when it is called, their CPU since the snapshot taken at construction (0 for those
    started since): a lower bound, exact when the connections outlive the measurement (the
    pools of the worker and of the web server do)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.start = self._backends()

    def _backends(self) -> dict[int, float]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            pids = queries.other_backend_pids().run(conn)
        found: dict[int, float] = {}
        for pid in pids:
            try:
                found[pid] = cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue
        return found

    def seconds(self) -> float:
        now = self._backends()
        return sum(cpu - self.start.get(pid, 0.0) for pid, cpu in now.items())


class DatabaseSampler:
    """A thread that calls `sample(conn)` every `interval` s on its own connection to one
    database, from entering the `with` block to leaving it."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                self.sample(conn)
                self.samples += 1

    def sample(self, conn: psycopg.Connection[Any]) -> None:
        raise NotImplementedError


class ActivitySampler(DatabaseSampler):
    """Samples pg_stat_activity of one database every `interval` s in a thread: what its
    active backends were doing (wait events, statements), as counts of samples. A coarse
    profile of where the database time goes, taken alongside a measurement."""

    def __init__(self, url: str, interval: float = 0.1) -> None:
        super().__init__(url, interval)
        self.waits: dict[str, int] = {}
        self.queries: dict[str, int] = {}

    def sample(self, conn: psycopg.Connection[Any]) -> None:
        for wait, query in queries.active_backends().run(conn):
            self.waits[wait] = self.waits.get(wait, 0) + 1
            self.queries[query] = self.queries.get(query, 0) + 1

    def summary(self, top: int = 8) -> dict[str, Any]:
        """Per sample, how many backends were active on average, and the top waits/queries."""

        def best(counts: dict[str, int]) -> dict[str, float]:
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
            return {k: round(v / max(self.samples, 1), 2) for k, v in ranked}

        return {
            "samples": self.samples,
            "interval_s": self.interval,
            "active_backends_mean": round(sum(self.waits.values()) / max(self.samples, 1), 2),
            "waits_mean": best(self.waits),
            "queries_mean": best(self.queries),
        }


# --- subprocesses -----------------------------------------------------------------------------


class ReadyProcess:
    """`python -m <module> ...` from the repository root; waits for its `READY <url>` line.
    Its output is drained (and kept, last lines) so the pipe never blocks it."""

    def __init__(
        self, module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 20.0
    ) -> None:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self.url = ""
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("READY ") and not self.url:
                    self.url = line.split()[1]
                    ready.set()
                self.lines.append(line.rstrip("\n"))
                del self.lines[:-200]
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError(f"{module} did not start:\n" + "\n".join(self.lines[-40:]))

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
