"""The shape of the code: one door to the SQL, and layers that import only downwards
(docs/architecture.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOOR = ROOT / "pgflow" / "db"  # the package: one module per area
SQL_START = re.compile(
    r"^\s*(select\b.*\b(from|pgflow)\b|insert\s+into\s|update\s+\S+\s+set\s|delete\s+from\s"
    r"|with\s+\w+\s+as\s*\(|create\s+(or\s+replace\s+)?(table|function|index|schema|view)\s"
    r"|alter\s+(table|function|role)\s|drop\s+(table|function|schema|index)\s"
    r"|truncate\s|grant\s+\w+\s+on\s|revoke\s+\w+\s+on\s)",
    re.IGNORECASE | re.DOTALL,
)
SQL_CALL = re.compile(r"\bpgflow\.[a-z_]+\s*\(")

# faces -> runtimes -> jobs/services -> adapters -> base. A module may import its own layer
# or lower ones, never a higher one.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("pgflow", "pgflow.config", "pgflow.errors", "pgflow.phones", "pgflow.logs")),
    ("adapters", ("pgflow.db", "pgflow.migrations", "pgflow.transport", "pgflow.agent")),
    (
        "services",
        (
            "pgflow.health",
            "pgflow.intake",
            "pgflow.leads",
            "pgflow.lead_csv",
            "pgflow.campaigns",
            "pgflow.campaign_schema",
            "pgflow.campaign_yaml",
            "pgflow.campaign_check",
            "pgflow.jobs",
            "pgflow.retell_setup",
            "pgflow.twilio_setup",
        ),
    ),
    ("runtimes", ("pgflow.worker", "pgflow.web", "pgflow.sandbox", "pgflow.demo")),
    ("faces", ("pgflow.cli",)),
]


def python_files() -> list[Path]:
    return sorted([*(ROOT / "pgflow").rglob("*.py"), *(ROOT / "cli").rglob("*.py")])


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "cli":
        parts = ["pgflow", "cli", *parts[1:]]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def docstrings(tree: ast.AST) -> set[int]:
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def sql_function_names() -> set[str]:
    """Names of our SQL functions that cannot be mistaken for a plain word ("alert" and
    "tick" are also dictionary keys; a call to them is caught by SQL_CALL or SQL_START)."""
    schema = (ROOT / "sql" / "schema.sql").read_text()
    names = re.findall(r"^CREATE FUNCTION pgflow\.([a-z_0-9]+)\(", schema, flags=re.M)
    return {name for name in names if "_" in name.strip("_")}


def test_there_are_sql_functions_to_look_for() -> None:
    assert {"ingest_lead", "claim_message", "record_send"} <= sql_function_names()


def sql_outside_the_door(source: str, where: str) -> list[str]:
    """Every string constant (docstrings aside) that is SQL or names one of our functions."""
    tree = ast.parse(source, where)
    skip = docstrings(tree)
    names = sql_function_names()
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if id(node) in skip:
            continue
        text = node.value
        if SQL_START.match(text) or SQL_CALL.search(text) or text in names:
            found.append(f"{where}:{node.lineno}: {text[:60]!r}")
    return found


BAD_MODULE = '''"""A module."""
def f(conn):
    """select pgflow.tick() in a docstring is prose."""
    conn.execute("select id from pgflow.messages")
    conn.execute("SELECT pgflow.tick(%s)", [1])
    return call(conn, "claim_message", help="With --all: only this campaign.")
'''


def test_the_door_check_finds_sql() -> None:
    found = sql_outside_the_door(BAD_MODULE, "bad.py")
    assert [line.split(": ", 1)[0] for line in found] == ["bad.py:4", "bad.py:5", "bad.py:6"]


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_outside_the_door(path: Path) -> None:
    if DOOR in path.parents:
        return
    found = sql_outside_the_door(path.read_text(), str(path.relative_to(ROOT)))
    assert not found, "SQL outside pgflow/db/ (the one door):\n" + "\n".join(found)


def imported(node: ast.Import | ast.ImportFrom, module: str, *, package: bool) -> list[str]:
    """What an import statement in `module` names: each module of `import a, b`; for
    `from X import a, b`, X then X.a and X.b (each a submodule or a name X defines).
    Relative imports are resolved against `module`; `cli` is pgflow.cli."""
    if isinstance(node, ast.Import):
        return [_as_pgflow(alias.name) for alias in node.names]
    if node.level:  # relative: resolve against this package
        base = module.split(".") if package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *(node.module or "").split(".")]).rstrip(".")
    else:
        target = _as_pgflow(node.module or "")
    return [target, *(f"{target}.{alias.name}" for alias in node.names)]


def _as_pgflow(name: str) -> str:
    return "pgflow." + name if name == "cli" or name.startswith("cli.") else name


def upward_imports(source: str, module: str, *, package: bool = False) -> list[str]:
    """The pgflow imports of `module` that point up the layers."""
    own = layer_of(module)
    assert own is not None, f"{module} belongs to no layer: add it to LAYERS and the docs"
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        for target in imported(node, module, package=package):
            theirs = layer_of(target) if target.startswith("pgflow") else None
            if theirs is not None and theirs > own:
                found.append(f"{module} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
    return found


def test_the_layer_check_finds_an_upward_import() -> None:
    source = "from pgflow import worker\nfrom pgflow.errors import PgflowError\n"
    assert upward_imports(source, "pgflow.db") == [
        "pgflow.db (adapters) imports pgflow.worker (runtimes)"
    ]
    assert upward_imports("from . import common\n", "pgflow.cli.status") == []
    # the CLI's package is `cli` on disk: importing it from below is upward too
    assert upward_imports("from cli import common\n", "pgflow.db") == [
        "pgflow.db (adapters) imports pgflow.cli (faces)",
        "pgflow.db (adapters) imports pgflow.cli.common (faces)",
    ]


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    found = upward_imports(path.read_text(), module_name(path), package=path.name == "__init__.py")
    assert not found, "imports must point down the layers:\n" + "\n".join(found)


def module_imports(
    source: str, module: str, modules: set[str], *, package: bool = False
) -> set[str]:
    """The modules among `modules` that `module` imports when it is imported: module-level
    imports only (an import inside a function runs later; one under `if TYPE_CHECKING:`
    never runs). `from pgflow import db` imports pgflow.db; `from pgflow.db.core import
    Call`, pgflow.db.core; `from pgflow.db import Call, core`, pgflow.db and pgflow.db.core."""
    found: set[str] = set()
    for node in _module_level(ast.parse(source).body):
        if isinstance(node, ast.Import):
            found.update(imported(node, module, package=package))
        elif isinstance(node, ast.ImportFrom):
            target, *named = imported(node, module, package=package)
            found.update(name for name in named if name in modules)
            if not all(name in modules for name in named):
                found.add(target)  # a name defined by the module `target` itself
    return (found & modules) - {module}


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements that run on import: the module's own, and those in its top-level
    `if`/`try`/`with` blocks, but not under `if TYPE_CHECKING:`."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            ):
                out += _module_level(node.orelse)
                continue
            out += _module_level(node.body) + _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                out += _module_level(block)
            for handler in node.handlers:
                out += _module_level(handler.body)
        elif isinstance(node, ast.With):
            out += _module_level(node.body)
        else:
            out.append(node)
    return out


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (first module = last) for each group of modules that import each other in
    a circle (a strongly connected component, Tarjan's), smallest group first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group: set[str] = set()
            while node not in group:
                group.add(stack.pop())
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted((_a_cycle(graph, group) for group in groups), key=lambda c: (len(c), c))


def _a_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest way from the group's first module back to itself (breadth first)."""
    start = min(group)
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for target in sorted(graph.get(path[-1], set()) & group):
            if target == start:
                return [*path, start]
            if target not in path:
                paths.append([*path, target])
    raise AssertionError(f"no cycle in {group}")  # a strongly connected group has one


def pgflow_import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in python_files()}
    return {
        module: module_imports(
            path.read_text(), module, set(paths), package=path.name == "__init__.py"
        )
        for module, path in paths.items()
    }


def test_the_cycle_check_finds_a_cycle() -> None:
    sources = {
        "pgflow.web.context": (
            "from typing import TYPE_CHECKING\n"
            "from pgflow.config import Settings\n"
            "if TYPE_CHECKING:\n    from pgflow.web.metrics import Metrics\n"
        ),
        "pgflow.web.metrics": "from pgflow.web.context import Web\n",
        "pgflow.a": "from pgflow import b\n",
        "pgflow.b": "try:\n    from . import c\nexcept ImportError:\n    pass\n",
        "pgflow.c": "import pgflow.a\ndef late():\n    from pgflow import d\n",
        "pgflow.d": "from pgflow.c import late\n",
        "pgflow.config": "",
        "pgflow.cli": "from cli import status\n",  # a package importing its submodule
        "pgflow.cli.status": "from . import common\n",
        "pgflow.cli.common": "",
    }
    graph = {m: module_imports(s, m, set(sources)) for m, s in sources.items()}
    assert graph["pgflow.web.context"] == {"pgflow.config"}
    assert graph["pgflow.cli.status"] == {"pgflow.cli.common"}
    assert import_cycles(graph) == [["pgflow.a", "pgflow.b", "pgflow.c", "pgflow.a"]]
    # the old web/context <-> web/metrics circle, had its import not been TYPE_CHECKING only
    graph["pgflow.web.context"].add("pgflow.web.metrics")
    assert ["pgflow.web.context", "pgflow.web.metrics", "pgflow.web.context"] in import_cycles(
        graph
    )


def test_no_import_cycles() -> None:
    cycles = import_cycles(pgflow_import_graph())
    assert not cycles, "import cycles among pgflow modules:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


MAX_LINES = 400  # a module past this is two rooms: split it by what it does


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_grows_past_one_room(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it"
