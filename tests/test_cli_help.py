"""Every `--help` of `pgflow` reads as flowing text.

typer's rich help keeps a docstring's line breaks (in the command lists, and in every
paragraph after a command's first), so a docstring wrapped in the middle of a sentence shows
as a broken sentence. Each page is rendered as typer renders it, at a width so wide that rich
wraps nothing itself: every line break left is one the source wrote."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import typer
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from pgflow.cli.main import app as pgflow_app

WIDTH = 1000  # columns: far wider than any help paragraph, so rich never wraps one
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL = re.compile(r"\S+(?: \S+)*")  # a table cell: words apart by single spaces
_SENTENCE_END = re.compile(r"[.!?:][\"'`)\]]*$")
_LIST_ITEM = re.compile(r"([-*•]|\d+[.)])\s")


def command_paths(app: typer.Typer) -> Iterator[tuple[str, ...]]:
    """Every group and command of `app`, found by walking its click tree."""

    def walk(command: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                yield from walk(sub, (*path, name))

    yield from walk(typer.main.get_command(app), ())


def render_help(app: typer.Typer, path: tuple[str, ...]) -> str:
    env = {"COLUMNS": str(WIDTH), "TERMINAL_WIDTH": str(WIDTH)}
    result = CliRunner().invoke(app, [*path, "--help"], env=env, terminal_width=WIDTH)
    assert result.exit_code == 0, f"{' '.join(path)} --help: {result.output}"
    return _ANSI.sub("", result.output)


def text_lines(page: str) -> list[str | None]:
    """The page's lines with the panels' borders taken off (their inner indentation kept);
    None where a paragraph, a panel or a table ends."""
    lines: list[str | None] = []
    for raw in page.splitlines():
        line = raw.rstrip()
        if line.lstrip()[:1] in ("╭", "╰"):
            lines.append(None)
            continue
        if line.startswith("│"):
            line = line[1:].removesuffix("│").rstrip()
        assert len(line) < WIDTH // 2, f"{line!r} comes near the width: rich may wrap it"
        lines.append(line if line.strip() else None)
    return lines


def broken_sentences(page: str) -> list[str]:
    """Each place where a line ends in the middle of a sentence and the next line goes on
    with it: the same paragraph or table cell, and not the next item of a list."""
    found = []
    lines = text_lines(page)
    for before, after in itertools.pairwise(lines):
        if before is None or after is None or _SENTENCE_END.search(before):
            continue
        last_cell = [m.start() for m in _CELL.finditer(before)][-1]
        indent = len(after) - len(after.lstrip())
        if indent < last_cell:  # a new row of a table, not the same cell going on
            continue
        if not _LIST_ITEM.match(after.lstrip()):
            found.append(f"{before.strip()!r} / {after.strip()!r}")
    return found


def help_problems(app: typer.Typer, prog: str) -> list[str]:
    problems = []
    for path in command_paths(app):
        for broken in broken_sentences(render_help(app, path)):
            problems.append(f"{' '.join((prog, *path, '--help'))}: {broken}")
    return problems


def test_the_walk_reaches_every_group_and_command() -> None:
    paths = {" ".join(p) for p in command_paths(pgflow_app)}
    assert {"", "db", "db migrate", "dead-letters requeue", "conversations set-outcome"} <= paths
    assert {"leads import", "numbers set", "retell setup", "sandbox say", "status"} <= paths
    assert "twilio setup" in paths
    assert {"conversations reply", "conversations handback", "users add", "users list"} <= paths
    assert len(paths) >= 30


def test_every_help_reads_as_flowing_text() -> None:
    assert help_problems(pgflow_app, "pgflow") == []


def _sample_app(summary: str, details: str) -> typer.Typer:
    sample = typer.Typer()
    group = typer.Typer(help="A group.")
    sample.add_typer(group, name="things")

    @group.command()
    def check() -> None:
        """Placeholder."""

    @sample.command()
    def other() -> None:
        """Placeholder."""

    check.__doc__ = other.__doc__ = f"{summary}\n\n{details}"
    return sample


def test_the_check_catches_a_broken_docstring() -> None:
    clean = _sample_app(
        "Check every thing, and say which failed.",
        "Exits 1 when any failed.\n\n\b\n- one: the first\n- two: the second",
    )
    assert help_problems(clean, "sample") == []

    wrapped_details = _sample_app(
        "Check every thing.", "Exits 1 when any thing\nfailed (a missing one counts)."
    )
    assert sorted(help_problems(wrapped_details, "sample")) == [
        "sample other --help: 'Exits 1 when any thing' / 'failed (a missing one counts).'",
        "sample things check --help: 'Exits 1 when any thing' / 'failed (a missing one counts).'",
    ]

    # The first paragraph is what a group lists for each command, line breaks and all.
    wrapped_summary = _sample_app("Check every thing (set\nCHECK_ALL=1) and say which.", "Ok.")
    assert sorted(help_problems(wrapped_summary, "sample")) == [
        "sample --help: 'other   Check every thing (set' / 'CHECK_ALL=1) and say which.'",
        "sample things --help: 'check  Check every thing (set' / 'CHECK_ALL=1) and say which.'",
    ]
