"""pgflow.inbound_intent(): opt-out keywords and phrases before anything else; the
sentences that merely contain an opt-out word are left to a judgment, never opted out."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgflow import db as pdb

Conn = psycopg.Connection[Any]

CASES = [
    # the standard keywords alone, any case and punctuation
    *[(w, "opt_out", "keyword") for w in ("STOP", "stop", "Stop.", " STOP!! ", "stop 🛑")],
    *[
        (w, "opt_out", "keyword")
        for w in ("STOPALL", "Unsubscribe", "CANCEL", "end", "Quit", "REVOKE", "OPTOUT")
    ],
    ("opt-out", "opt_out", "keyword"),
    ("Stop please", "opt_out", "keyword"),
    ("please stop", "opt_out", "keyword"),
    ("PARAR", "opt_out", "keyword"),
    ("Baja", "opt_out", "keyword"),
    # clear phrases
    ("stop texting me", "opt_out", "phrase"),
    ("Please stop texting me!", "opt_out", "phrase"),
    ("take me off your list", "opt_out", "phrase"),
    ("Take me off your list please", "opt_out", "phrase"),
    ("don't contact me again", "opt_out", "phrase"),
    ("Don\u2019t text me", "opt_out", "phrase"),  # a curly apostrophe
    ("remove me", "opt_out", "phrase"),
    ("please remove my number", "opt_out", "phrase"),
    ("unsubscribe me from this", "opt_out", "phrase"),
    ("no more texts", "opt_out", "phrase"),
    ("leave me alone", "opt_out", "phrase"),
    ("lose my number", "opt_out", "phrase"),
    ("no me escriban más", "opt_out", "phrase"),
    # not opt-outs
    ("Don't stop!", "maybe_opt_out", "ambiguous"),
    ("stop by tomorrow at 3?", "maybe_opt_out", "ambiguous"),
    ("please don't stop texting me", "maybe_opt_out", "ambiguous"),
    ("can you stop by on friday", "maybe_opt_out", "ambiguous"),
    ("yes I own the house", "none", None),
    ("What does it cost?", "none", None),
    ("the end of the month works", "none", None),
    ("", "none", None),
    # resubscribe, help, a person
    ("START", "opt_in", "keyword"),
    ("unstop", "opt_in", "keyword"),
    ("Yes", "opt_in", "keyword"),
    ("HELP", "help", "keyword"),
    ("info", "help", "keyword"),
    ("can I talk to a real person?", "human", "phrase"),
    ("I want to speak with a manager", "human", "phrase"),
    ("is this a bot? I want a real person", "human", "phrase"),
    ("human please", "human", "phrase"),
    ("can someone call me", "human", "phrase"),
]


@pytest.mark.parametrize(("text", "intent", "rule"), CASES)
def test_intent(module_db: Conn, text: str, intent: str, rule: str | None) -> None:
    assert pdb.inbound_intent(text).run(module_db) == {"intent": intent, "rule": rule}
