"""The benchmarks go through the door too: they call the engine's SQL functions through
`pgflow.db`, keep every query of their own in bench/queries.py, and use the CLI as the
installed package has it (`pgflow.cli`), never the source tree's top-level `cli`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.test_architecture import ROOT, docstrings, sql_outside_the_door

BENCH = ROOT / "bench"
QUERIES = BENCH / "queries.py"
# What the door check does not look for, as the engine never runs it: the benchmarks'
# administration and statistics (`select 1`, `select pg_stat_clear_snapshot()`, vacuum,
# databases created, altered and dropped, a trigger disabled).
BENCH_SQL = re.compile(
    r"^\s*(select\s+(\d|[a-z_]+\s*\()|vacuum\b|analyze\b|(create|alter|drop)\s+database\s"
    r"|alter\s+table\s)",
    re.IGNORECASE,
)


def bench_files() -> list[Path]:
    return sorted(BENCH.glob("*.py"))


def bench_sql(source: str, where: str) -> list[str]:
    """The door check's findings, and every string constant (docstrings aside) that starts
    like the benchmarks' own administration SQL."""
    found = set(sql_outside_the_door(source, where))
    tree = ast.parse(source, where)
    skip = docstrings(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if id(node) not in skip and BENCH_SQL.match(node.value):
            found.add(f"{where}:{node.lineno}: {node.value[:60]!r}")
    return sorted(found, key=lambda line: int(line.split(":")[1]))


def cli_imports(source: str, where: str) -> list[str]:
    """Imports of the source tree's top-level `cli` package (`pgflow.cli` is the installed one)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        found += [
            f"{where}:{node.lineno}: {name}"
            for name in names
            if name == "cli" or name.startswith("cli.")
        ]
    return found


BAD_BENCH = '''"""A benchmark: `select 1` and vacuum analyze in prose are fine."""
import cli.common
from cli import main
from pgflow.cli.common import configure_logging
def f(conn, name):
    """select pgflow.tick() in a docstring is prose."""
    conn.execute("select pgflow.tick(now(), 1000)")
    conn.execute("select count(*) from pgflow.messages")
    conn.execute("vacuum analyze")
    conn.execute(f'drop database if exists "{name}" with (force)')
    conn.execute("select 1")
    conn.execute("select pg_stat_clear_snapshot()")
    return call(conn, "apply_campaigns", help="select1 and a select of the fastest")
'''


def test_the_bench_check_finds_sql_and_cli_imports() -> None:
    found = bench_sql(BAD_BENCH, "bad.py")
    assert [line.split(": ", 1)[0] for line in found] == [f"bad.py:{n}" for n in range(7, 14)]
    assert cli_imports(BAD_BENCH, "bad.py") == ["bad.py:2: cli.common", "bad.py:3: cli"]


def test_there_are_bench_files_and_queries() -> None:
    assert QUERIES in bench_files()
    assert bench_sql(QUERIES.read_text(), "bench/queries.py"), "bench/queries.py holds no SQL?"


@pytest.mark.parametrize("path", bench_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_outside_bench_queries(path: Path) -> None:
    if path == QUERIES:
        return
    found = bench_sql(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, (
        "SQL in a benchmark: call the engine through pgflow.db, put the benchmark's own"
        " queries in bench/queries.py:\n" + "\n".join(found)
    )


@pytest.mark.parametrize("path", bench_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_of_the_source_tree_cli(path: Path) -> None:
    found = cli_imports(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, "import pgflow.cli (the installed package), not cli:\n" + "\n".join(found)


def test_every_bench_query_is_named_and_documented() -> None:
    """bench/queries.py lists its queries: each public builder has a one-line docstring."""
    tree = ast.parse(QUERIES.read_text())
    public = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    ]
    assert public
    undocumented = [
        node.name
        for node in public
        if not (doc := ast.get_docstring(node)) or len(doc.splitlines()) != 1
    ]
    assert not undocumented, f"builders without a one-line docstring: {undocumented}"
