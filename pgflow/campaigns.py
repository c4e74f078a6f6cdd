"""Campaign files (YAML): load, validate with precise messages, normalise for
pgflow.apply_campaigns()."""

from __future__ import annotations

import dataclasses
import re
import zoneinfo
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pgflow import campaign_schema, phones
from pgflow.errors import InvalidInput

DAY_NUMBERS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
DAY_ALIASES = {
    "weekdays": [1, 2, 3, 4, 5],
    "daily": [1, 2, 3, 4, 5, 6, 7],
    "all": [1, 2, 3, 4, 5, 6, 7],
}
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_TIME = re.compile(r"^(?:([01]?\d|2[0-3]):([0-5]\d)|(24):(00))$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
CONTACT_FIELDS = {"first_name", "last_name", "email"}

AGENT_KEYS = {"name", "prompt", "model", "retell_agent_id", "max_turns", "reply_debounce"}
NUMBER_KEYS = {"number", "inbound_agent", "per_second", "daily_segments"}
CAMPAIGN_KEYS = {
    "slug",
    "name",
    "agent",
    "from_number",
    "from_numbers",
    "status",
    "timezone",
    "send_window",
    "reply_timeout",
    "silence_timeout",
    "daily_cap",
    "max_attempts",
    "help_text",
    "opt_out_text",
    "fallbacks",
    "goal",
    "steps",
}
STEP_KEYS = {"delay", "body"}
WINDOW_KEYS = {"start", "end", "days"}
LONG_TEXT = 320
MAX_TEXT = 2000  # any text field of a campaign file, unless it says otherwise
MAX_NAME = 100  # names (agents, placeholders) and fallbacks
MAX_PROMPT = 20_000
MAX_INT = 2_147_483_647


@dataclasses.dataclass
class CampaignFile:
    doc: dict[str, Any]
    warnings: list[str]


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


def _read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
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


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def keys(self, path: str, item: dict[Any, Any], allowed: set[str]) -> None:
        for key in sorted((k for k in item if k not in allowed), key=str):
            self.error(f"{path}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def text(
        self, path: str, value: Any, *, required: bool = True, max_length: int = MAX_TEXT
    ) -> str | None:
        if value is None:
            if required:
                self.error(path, "is required")
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.error(path, "must be text")
            return None
        text = str(value).strip()
        if required and not text:
            self.error(path, "must not be empty")
        if "\x00" in text:
            self.error(path, "must not contain NUL characters")
            return None
        if len(text) > max_length:
            self.error(path, f"longer than {max_length:,} characters")
            return None
        return text or None

    def duration(self, path: str, value: Any, *, default: str | None = None) -> str | None:
        if value is None:
            return default
        seconds = parse_duration(str(value))
        if seconds is None:
            self.error(path, f"{value!r} is not a duration (use e.g. 0m, 30m, 2h, 1d, 1d12h)")
            return None
        days, rest = divmod(seconds, 86400)
        return f"{days} days {rest} seconds"

    def positive_int(self, path: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
            self.error(path, f"must be a whole number from 1 to {MAX_INT:,}")
            return None
        return value


def parse_duration(text: str) -> int | None:
    """Seconds in '0m', '90s', '2h', '1d12h', '1w'; None when it is not one."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _DURATION.sub("", compact):
        return None
    return sum(int(n) * DURATION_UNITS[u] for n, u in _DURATION.findall(compact))


def _days(ck: _Checker, path: str, value: Any) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value.lower() in DAY_ALIASES:
            return DAY_ALIASES[value.lower()]
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not value:
        ck.error(path, "must be a list of days like [mon, tue, wed]")
        return None
    days: set[int] = set()
    for day in value:
        number = DAY_NUMBERS.get(day.strip().lower()[:3]) if isinstance(day, str) else None
        if number is None:
            shown = repr(day)[:40] if isinstance(day, str | int | float) else type(day).__name__
            ck.error(path, f"{shown} is not a day (mon..sun)")
        else:
            days.add(number)
    return sorted(days)


def _time(ck: _Checker, path: str, value: Any) -> str | None:
    if value is None:
        return None
    match = _TIME.match(str(value).strip())
    if not match:
        ck.error(path, f"{value!r} is not a time of day (HH:MM, 24:00 for end of day)")
        return None
    if match[3]:
        return "24:00"
    return f"{int(match[1]):02d}:{match[2]}"


def _agent(ck: _Checker, i: int, item: Any) -> dict[str, Any] | None:
    path = f"agents[{i}]"
    if not isinstance(item, dict):
        ck.error(path, "must be a mapping")
        return None
    ck.keys(path, item, AGENT_KEYS)
    agent: dict[str, Any] = {
        "name": ck.text(f"{path}.name", item.get("name"), max_length=MAX_NAME),
        "prompt": ck.text(f"{path}.prompt", item.get("prompt"), max_length=MAX_PROMPT),
        "model": ck.text(f"{path}.model", item.get("model"), required=False),
        "retell_agent_id": ck.text(
            f"{path}.retell_agent_id", item.get("retell_agent_id"), required=False
        ),
        "max_turns": ck.positive_int(f"{path}.max_turns", item.get("max_turns")),
        "reply_debounce": ck.duration(f"{path}.reply_debounce", item.get("reply_debounce")),
    }
    if agent["max_turns"] is not None and agent["max_turns"] > 100:
        ck.error(f"{path}.max_turns", "at most 100")
    debounce = parse_duration(str(item.get("reply_debounce") or "0s"))
    if debounce is not None and debounce > 300:
        ck.error(f"{path}.reply_debounce", "at most 5m")
    return {k: v for k, v in agent.items() if v is not None}


def _number(ck: _Checker, i: int, item: Any) -> dict[str, Any] | None:
    path = f"numbers[{i}]"
    if not isinstance(item, dict):
        ck.error(path, "must be a mapping {number, inbound_agent, per_second, daily_segments}")
        return None
    ck.keys(path, item, NUMBER_KEYS)
    raw = ck.text(f"{path}.number", item.get("number"))
    out: dict[str, Any] = {
        "inbound_agent": ck.text(f"{path}.inbound_agent", item.get("inbound_agent"), required=False)
    }
    if raw:
        out["number"] = _e164(ck, f"{path}.number", raw)
    # A limit key that is present is applied (null: no limit); an absent one is left as is.
    if "per_second" in item:
        rate = item["per_second"]
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1000
        ):
            ck.error(f"{path}.per_second", "must be a number of messages per second, 0 < n <= 1000")
        else:
            out["per_second"] = rate
    if "daily_segments" in item:
        daily = item["daily_segments"]
        if daily is not None:
            daily = ck.positive_int(f"{path}.daily_segments", daily)
        out["daily_segments"] = daily
    return {k: v for k, v in out.items() if v is not None or k in ("per_second", "daily_segments")}


def _e164(ck: _Checker, path: str, raw: str) -> str | None:
    number = phones.normalize(raw)
    if number.e164 is None:
        ck.error(path, f"{raw!r}: {number.error}")
    return number.e164


def _pool(ck: _Checker, path: str, item: dict[str, Any]) -> list[str]:
    """The campaign's sending numbers, from_number first: `from_number`, `from_numbers` (a
    pool; a new conversation keeps the number it starts on), or both."""
    raw_pool = item.get("from_numbers")
    if "from_number" not in item and raw_pool is None:
        ck.error(f"{path}.from_number", "is required (or from_numbers, a list)")
        return []
    pool: list[str] = []
    if "from_number" in item:
        raw = ck.text(f"{path}.from_number", item.get("from_number"))
        if raw and (number := _e164(ck, f"{path}.from_number", raw)):
            pool.append(number)
    if raw_pool is not None:
        if not isinstance(raw_pool, list) or not raw_pool:
            ck.error(f"{path}.from_numbers", "must be a list of sending numbers")
            return pool
        listed: set[str] = set()
        for j, raw_item in enumerate(raw_pool):
            raw = ck.text(f"{path}.from_numbers[{j}]", raw_item)
            if raw and (number := _e164(ck, f"{path}.from_numbers[{j}]", raw)):
                if number in listed:
                    ck.error(f"{path}.from_numbers[{j}]", f"{number} is listed twice")
                listed.add(number)
                if number not in pool:  # from_number may be listed too: it stays first
                    pool.append(number)
    return pool


def _campaign(ck: _Checker, i: int, item: Any) -> dict[str, Any] | None:
    path = f"campaigns[{i}]"
    if not isinstance(item, dict):
        ck.error(path, "must be a mapping")
        return None
    ck.keys(path, item, CAMPAIGN_KEYS)
    out: dict[str, Any] = {
        "slug": ck.text(f"{path}.slug", item.get("slug")),
        "name": ck.text(f"{path}.name", item.get("name")),
        "agent": ck.text(f"{path}.agent", item.get("agent"), max_length=MAX_NAME),
    }
    if out["slug"] and not _SLUG.match(out["slug"]):
        ck.error(f"{path}.slug", "use lowercase letters, digits, - and _ (at most 63)")
    pool = _pool(ck, path, item)
    if pool:
        out["from_number"] = pool[0]
        out["from_numbers"] = pool
    status = item.get("status")
    if status is not None:
        if status not in ("draft", "active", "paused", "archived"):
            ck.error(f"{path}.status", "must be draft, active, paused or archived")
        out["status"] = status
    tz = ck.text(f"{path}.timezone", item.get("timezone"), required=False)
    if tz:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            ck.error(f"{path}.timezone", f"{tz!r} is not an IANA time zone (e.g. America/Chicago)")
        out["timezone"] = tz
    window = item.get("send_window")
    if window is not None:
        if not isinstance(window, dict):
            ck.error(f"{path}.send_window", "must be a mapping {start, end, days}")
        else:
            ck.keys(f"{path}.send_window", window, WINDOW_KEYS)
            out["window_start"] = _time(ck, f"{path}.send_window.start", window.get("start"))
            out["window_end"] = _time(ck, f"{path}.send_window.end", window.get("end"))
            out["window_days"] = _days(ck, f"{path}.send_window.days", window.get("days"))
            if (
                out["window_start"]
                and out["window_end"]
                and out["window_start"] >= out["window_end"]
            ):
                ck.error(f"{path}.send_window", "start must be before end (same day)")
    for key in ("reply_timeout", "silence_timeout"):
        out[key] = ck.duration(f"{path}.{key}", item.get(key))
        if out[key] == "0 days 0 seconds":
            ck.error(f"{path}.{key}", "must be longer than zero")
    for key in ("daily_cap", "max_attempts"):
        out[key] = ck.positive_int(f"{path}.{key}", item.get(key))
    if out["max_attempts"] is not None and out["max_attempts"] > 50:
        ck.error(f"{path}.max_attempts", "at most 50")
    out["help_text"] = ck.text(f"{path}.help_text", item.get("help_text"), required=False)
    out["goal"] = ck.text(f"{path}.goal", item.get("goal"), required=False)
    out["opt_out_text"] = ck.text(f"{path}.opt_out_text", item.get("opt_out_text"), required=False)
    fallbacks = item.get("fallbacks") or {}
    if not isinstance(fallbacks, dict):
        ck.error(f"{path}.fallbacks", "must be a mapping of placeholder to text")
        fallbacks = {}
    out["fallbacks"] = {}
    for key, value in fallbacks.items():
        if isinstance(value, dict | list):
            ck.error(f"{path}.fallbacks.{key}", "must be text")
            continue
        text = ck.text(f"{path}.fallbacks.{key}", value, required=False, max_length=MAX_NAME)
        if text is not None and ck.text(f"{path}.fallbacks", str(key), max_length=MAX_NAME):
            out["fallbacks"][str(key)] = text
    steps = item.get("steps")
    if not isinstance(steps, list) or not steps:
        ck.error(f"{path}.steps", "at least one step is required")
        steps = []
    out["steps"] = []
    for j, step in enumerate(steps):
        spath = f"{path}.steps[{j}]"
        if not isinstance(step, dict):
            ck.error(spath, "must be a mapping {delay, body}")
            continue
        ck.keys(spath, step, STEP_KEYS)
        body = ck.text(f"{spath}.body", step.get("body"))
        delay = ck.duration(f"{spath}.delay", step.get("delay"), default="0 days 0 seconds")
        if body:
            if len(body) > 1600:
                ck.error(f"{spath}.body", "longer than 1600 characters")
            elif len(body) > LONG_TEXT:
                ck.warnings.append(f"{spath}.body: {len(body)} characters; keep texts under 320")
            for name in sorted(set(_PLACEHOLDER.findall(body))):
                if name not in out["fallbacks"]:
                    ck.warnings.append(
                        f"{spath}.body: {{{{{name}}}}} has no fallback; it is left out when a "
                        "contact has no value"
                    )
        out["steps"].append({"delay": delay, "body": body})
    return {k: v for k, v in out.items() if v is not None}


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _schema_errors(data: Any) -> list[str]:
    """The JSON Schema's verdict, as `path: message`, in document order."""
    validator = jsonschema.Draft202012Validator(campaign_schema.SCHEMA)
    found = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.path]):
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed)):
                found.append(
                    f"{_path([*error.path, key])}: unknown key (allowed: {', '.join(allowed)})"
                )
            continue
        found.append(f"{_path(error.path)}: {error.message}")
    return found


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _line(root: yaml.Node | None, path: str) -> int | None:
    """The line (1-based) of the YAML node at `path` (e.g. campaigns[0].steps[1].delay), or
    of the deepest part of it that exists."""
    node = root
    line = None if root is None else root.start_mark.line + 1
    for name, index in _PATH_PART.findall(path.split(":", 1)[0].split(" ", 1)[0]):
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


def _located(errors: list[str], root: yaml.Node | None, source: str) -> str:
    lines = []
    for error in errors:
        line = _line(root, error)
        lines.append(f"{source}:{line}: {error}" if line else f"{source}: {error}")
    return f"{source}: {len(errors)} problem(s):\n  " + "\n  ".join(lines)


def parse(text: str, source: str = "<campaign file>") -> CampaignFile:
    """Validate a campaign document; raises InvalidInput listing every problem at once, each
    with the file, the line and the field (`solar.yaml:24: campaigns[0].steps[1].delay: ...`).
    Our own checks come first (their messages say what to write); the published JSON Schema
    then checks what they let through, so the two cannot drift apart unseen."""
    data, root = _read_yaml(text, source)
    ck = _Checker()
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: expected a mapping with 'agents' and 'campaigns'")

    ck.keys("(top)", data, {"agents", "campaigns", "numbers"})
    for key in ("agents", "campaigns", "numbers"):
        if data.get(key) is not None and not isinstance(data[key], list):
            ck.error(key, "must be a list")
            data = {**data, key: []}
    agents = [
        agent
        for i, raw in enumerate(data.get("agents") or [])
        if (agent := _agent(ck, i, raw)) is not None
    ]
    campaigns = [
        campaign
        for i, raw in enumerate(data.get("campaigns") or [])
        if (campaign := _campaign(ck, i, raw)) is not None
    ]
    numbers = [
        number
        for i, raw in enumerate(data.get("numbers") or [])
        if (number := _number(ck, i, raw)) is not None
    ]
    names = {a.get("name") for a in agents}
    for number in numbers:
        agent = number.get("inbound_agent")
        if agent is not None and agent not in names:
            ck.error(f"number {number.get('number')}", f"inbound_agent {agent!r} is not defined")
    for kind, items, key in (
        ("agent", agents, "name"),
        ("campaign", campaigns, "slug"),
        ("number", numbers, "number"),
    ):
        seen: set[str] = set()
        for item in items:
            if item.get(key) in seen:
                ck.error(f"{kind} {item[key]}", f"appears twice in {source}")
            seen.add(item.get(key, ""))
    if ck.errors:
        raise InvalidInput(_located(ck.errors, root, source))
    # The published schema (what editors check) must agree; anything it still finds is shown.
    problems = _schema_errors(data)
    if problems:
        raise InvalidInput(_located(problems, root, source))
    return CampaignFile({"agents": agents, "campaigns": campaigns, "numbers": numbers}, ck.warnings)


def load(path: Path) -> CampaignFile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InvalidInput(
            f"{path}:{line}: not UTF-8 ({exc.reason}); save the file as UTF-8"
        ) from None
    return parse(text.removeprefix("\ufeff"), str(path))
