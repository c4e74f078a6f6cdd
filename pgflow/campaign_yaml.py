"""Campaign files as YAML: read safely, and say on which line a problem is.

`read()` refuses what a campaign file never needs and a hostile one would use (aliases,
deep nesting, a key given twice) and turns every YAML error into `FILE:LINE: ...`;
`located()` lists problems (`campaigns[0].steps[1].delay: ...`) each with its line."""

from __future__ import annotations

import re
from typing import Any

import yaml

from pgflow.errors import InvalidInput

MAX_DEPTH = 32  # a campaign file is a few levels deep


class _Refused(Exception):
    """A campaign file refused while it is read: the line and why."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _Loader(yaml.SafeLoader):
    """yaml.safe_load that refuses what a campaign file never needs and a hostile one
    would use: aliases (a billion laughs), nesting deeper than MAX_DEPTH (the parser's
    recursion), and a key given twice in one mapping (YAML keeps the last, silently)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                line,
                "YAML aliases (*name) are not supported in campaign files: write the value out",
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(line, f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:
                continue  # an unhashable key: SafeLoader says so
            if first != line:
                raise _Refused(line, f"{str(key)[:60]!r} appears twice (first on line {first})")
        return super().construct_mapping(node, deep)


def read(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree (for line numbers); InvalidInput with the line."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
        root = yaml.compose(text, Loader=_Loader)
    except _Refused as exc:
        raise InvalidInput(f"{source}:{exc.line}: {exc.message}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character
        shown = f"U+{char:04X}" if isinstance(char, int) else f"U+{ord(char):04X}"
        raise InvalidInput(
            f"{source}:{line}: not valid YAML: character {shown} is not allowed"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise InvalidInput(f"{where}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"{source}: not valid YAML: nested too deeply") from None
    return data, root


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def line_of(root: yaml.Node | None, problem: str) -> int | None:
    """The line (1-based) of the YAML node a problem's path names (e.g.
    campaigns[0].steps[1].delay), or of the deepest part of it that exists."""
    node = root
    line = None if root is None else root.start_mark.line + 1
    for name, index in _PATH_PART.findall(problem.split(":", 1)[0].split(" ", 1)[0]):
        if index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            node = node.value[int(index)]
        elif name and isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if getattr(k, "value", None) == name]
            if not found:
                break
            node = found[0][1]
        else:
            break
        line = node.start_mark.line + 1
    return line


def located(problems: list[str], root: yaml.Node | None, source: str) -> str:
    """Every problem with the file and its line, in the order of the file."""
    lines = []
    for problem in problems:
        line = line_of(root, problem)
        lines.append((line or 0, f"{source}:{line}: {problem}" if line else f"{source}: {problem}"))
    lines.sort(key=lambda item: item[0])
    shown = "\n  ".join(text for _, text in lines)
    return f"{source}: {len(problems)} problem(s):\n  {shown}"
