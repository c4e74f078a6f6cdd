"""Step templates and SMS segment counting (SQL functions)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Json

from tests.helpers import scalar

Conn = psycopg.Connection[Any]


def render(db: Conn, template: str, values: dict[str, Any], fallbacks: dict[str, str]) -> str:
    result: str = scalar(
        db,
        "select pgflow.render_template(%s, %s::jsonb, %s::jsonb)",
        [template, Json(values), Json(fallbacks)],
    )
    return result


@pytest.mark.parametrize(
    ("template", "values", "fallbacks", "expected"),
    [
        ("Hi {{first_name}}!", {"first_name": "Sam"}, {}, "Hi Sam!"),
        ("Hi {{ first_name }}!", {"first_name": "Sam"}, {}, "Hi Sam!"),
        ("Hi {{first_name}}, ok", {}, {"first_name": "there"}, "Hi there, ok"),
        ("Hi {{first_name}}, ok", {"first_name": "  "}, {"first_name": "there"}, "Hi there, ok"),
        ("Hi {{first_name}}, ok", {}, {}, "Hi, ok"),
        ("Hey {{first_name}} how are you", {}, {}, "Hey how are you"),
        ("{{a}}{{b}}", {"a": "1", "b": "2"}, {}, "12"),
        ("In {{city}}", {"city": "Austin"}, {}, "In Austin"),
        ("Pay {{amount}}", {"amount": "$5 \\1 &"}, {}, "Pay $5 \\1 &"),
        ("Cost {{bill}}", {"bill": 180}, {}, "Cost 180"),
        ("No placeholders", {}, {}, "No placeholders"),
    ],
)
def test_render(
    db: Conn, template: str, values: dict[str, Any], fallbacks: dict[str, str], expected: str
) -> None:
    assert render(db, template, values, fallbacks) == expected


names = st.from_regex(r"[a-z_]{1,10}", fullmatch=True)
# Postgres text holds no NUL and no lone surrogate (neither can be sent as JSON to it).
plain = st.text(
    alphabet=st.characters(blacklist_characters="{}\x00\x01", blacklist_categories=["Cs"]),
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    parts=st.lists(st.one_of(plain, names.map(lambda n: "{{" + n + "}}")), max_size=6),
    values=st.dictionaries(names, plain, max_size=3),
    fallbacks=st.dictionaries(names, plain, max_size=2),
)
def test_render_never_leaves_a_placeholder(
    db: Conn, parts: list[str], values: dict[str, str], fallbacks: dict[str, str]
) -> None:
    out = render(db, "".join(parts), values, fallbacks)
    assert "{{" not in out
    assert "}}" not in out
    assert "\x01" not in out
    for part in parts:
        if not part.startswith("{{") and part.strip(" ,.!?;:"):
            assert part.strip(" ,.!?;:") in out


@pytest.mark.parametrize(
    ("body", "segments", "encoding"),
    [
        ("hello", 1, "gsm7"),
        ("a" * 160, 1, "gsm7"),
        ("a" * 161, 2, "gsm7"),
        ("a" * 306, 2, "gsm7"),
        ("a" * 307, 3, "gsm7"),
        ("{" * 80, 1, "gsm7"),  # extension characters count double
        ("{" * 81, 2, "gsm7"),
        ("€uro", 1, "gsm7"),
        ("Ça va? ñ ü Ø", 1, "gsm7"),
        ("it\u2019s", 1, "ucs2"),  # a curly apostrophe turns the message into UCS-2
        ("a" * 70 + "\u2014", 2, "ucs2"),
        ("\u2014" * 70, 1, "ucs2"),
        ("\U0001f600" * 35, 1, "ucs2"),  # emoji take two UTF-16 units
        ("\U0001f600" * 36, 2, "ucs2"),
        ("x" * 134 + "é", 1, "gsm7"),
    ],
)
def test_segments(db: Conn, body: str, segments: int, encoding: str) -> None:
    assert scalar(db, "select pgflow.sms_segments(%s)", [body]) == segments
    assert scalar(db, "select pgflow.sms_encoding(%s)", [body]) == encoding
