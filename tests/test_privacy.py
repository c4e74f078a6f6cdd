"""Proof of consent and erasure on request: pgflow.contact_consent(), pgflow.forget_contact(),
the keyed-hash suppression of a forgotten number, and `pgflow contacts consent|forget`.

The erasure test builds a whole history first (a lead with consent, a refused lead and an
unreadable body with the same number, a drip step sent, replies through Retell and Twilio,
the agent's answer, a request for a person with its alert, a person's hold, reply and
outcome, a CRM event, an opt-out with its text, a Twilio receipt, a job's traceback), forgets
the contact through the CLI, then scans every text, jsonb, bytea and array column of every
table of schema pgflow (found in the catalog, so a table added later is scanned too)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from psycopg import sql
from typer.testing import CliRunner

from pgflow import db as pdb
from pgflow import errors, intake
from pgflow.cli import contacts
from pgflow.cli import leads as leads_cli
from tests.chat_payloads import chat, event, inbound
from tests.factories import apply_campaign, at, count, ingest
from tests.helpers import row, rows, scalar

Conn = psycopg.Connection[Any]
NOW = at("2026-11-23 15:00")  # Monday 10:00 in New York
OPEN = {"window_start": "00:00", "window_end": "24:00", "help_text": "SunCo help: call 555-0100"}
LEAD_RAW = "(212) 555-0147"
LEAD = "+12125550147"
LINE = "+14155550100"
FIRST, LAST, EMAIL = "Zebulon", "Quarrington", "zeb.quarrington@example.org"
STREET = "41 Wyvern Lane"
IP, AGENT_STRING = "203.0.113.77", "Mozilla/5.0 (X11; Linux x86_64) ZqBrowser/9.1"
DISCLOSURE = "I agree to receive marketing texts from SunCo at this number. Reply STOP to end."
REPLY = "yes, the roof on Wyvern is 12 years old zq-reply-1"
AGENT_REPLY = "Great! zq-agent-2 Is your monthly bill over $100?"
TWILIO_TEXT = "also my bill is $180 zq-twilio-3"
HUMAN = "can I talk to a real person about zq-human-4"
PERSON_REPLY = "Hi, Dana here from SunCo zq-person-5"
STOP = "stop texting me zq-stop-6"
SID = "SM" + "7" * 32

cli = typer.Typer()
cli.add_typer(contacts.app, name="contacts")


def run(db_url: str, *args: str, **kw: Any) -> Any:
    env = {"DATABASE_URL": db_url, "LOGNAME": "dana", "COLUMNS": "200"}
    return CliRunner().invoke(cli, ["contacts", *args], env=env, **kw)


def retell(db: Conn, payload: dict[str, Any], minutes: int) -> dict[str, Any]:
    return pdb.record_retell_event(payload, False, NOW + dt.timedelta(minutes=minutes)).run(db)


def twilio_text(db: Conn, body: str, sid: str, minutes: int) -> dict[str, Any]:
    payload = {"MessageSid": sid, "From": LEAD, "To": LINE, "Body": body}
    return pdb.record_twilio_inbound(payload, NOW + dt.timedelta(minutes=minutes)).run(db)


def lead_with_consent(db: Conn, **fields: Any) -> dict[str, Any]:
    consent = {
        "at": "2026-11-23T14:58:00Z",
        "source": "landing page",
        "text": DISCLOSURE,
        "ip": IP,
        "user_agent": AGENT_STRING,
    }
    return ingest(
        db,
        LEAD_RAW,
        NOW,
        first_name=FIRST,
        last_name=LAST,
        email=EMAIL,
        state="new york",
        source="zq-form",
        external_id="crm-zq-991",
        attributes={"street": STREET},
        consent=consent,
        **fields,
    )


def history(db: Conn) -> dict[str, Any]:
    """A contact with everything the engine keeps of a person; {contact_id, conversation_id}."""
    apply_campaign(db, **OPEN)
    lead = lead_with_consent(db)
    assert lead["status"] == "created"
    # the same number refused, and a body that never parsed
    refused = pdb.ingest_lead({"campaign": "solar", "phone": LEAD_RAW, "email": "zq at home"})
    assert refused.run(db)["status"] == "rejected"
    unreadable = f'{{"phone": "{LEAD_RAW}", "first_name": "{FIRST}"'
    pdb.reject_lead(unreadable, "malformed_json", "not JSON", "zq-form", NOW).run(db)
    # step 1 sent as a Retell chat
    step = scalar(db, "select id from pgflow.messages")
    assert pdb.claim_message(step, None, None, NOW).run(db)["action"] == "send"
    sent = {"ok": True, "chat_id": "chat_zq", "status_code": 200}
    assert pdb.record_send(step, 1, sent, 30.0, NOW).run(db)["action"] == "sent"
    talk = scalar(db, "select id from pgflow.conversations")
    # Retell asks who answers the lead (our answer carries their names), then the chat
    assert retell(db, inbound(LEAD, LINE, chat_id="chat_zq"), 1)["result"] == "answered"
    body = scalar(db, "select body from pgflow.messages where id = %s", [step])
    items = [("agent", body), ("user", REPLY), ("agent", AGENT_REPLY)]
    start = int(NOW.timestamp() * 1000)
    transcript = chat("chat_zq", items, conversation_id=talk, message_id=step, start_ms=start)
    assert retell(db, event("transcript_updated", transcript), 2)["inbound"] == 1
    # a text through Twilio, and a receipt for it that names the number
    assert twilio_text(db, TWILIO_TEXT, SID, 3)["result"] == "recorded"
    receipt = {"MessageSid": "SM" + "8" * 32, "MessageStatus": "delivered", "To": LEAD}
    pdb.record_twilio_status(step, receipt, NOW + dt.timedelta(minutes=3)).run(db)
    # a person asked for: escalated, an alert quoting the lead; a person holds, writes, settles
    items.append(("user", HUMAN))
    transcript = chat("chat_zq", items, conversation_id=talk, message_id=step, start_ms=start)
    assert retell(db, event("transcript_updated", transcript), 4)["inbound"] == 1
    assert (
        scalar(db, "select message from pgflow.alerts where kind like 'escalation:%%'").find(
            "zq-human-4"
        )
        > 0
    )
    pdb.take_over(talk, "cli:dana", None, f"calling {FIRST} back").run(db)
    pdb.human_reply(talk, PERSON_REPLY, "cli:dana").run(db)
    pdb.settle(talk, "qualified", f"{FIRST} {LAST} owns the house", "cli:dana").run(db)
    event_ = {"type": "disqualified", "phone": LEAD, "data": {"note": f"{FIRST} moved away"}}
    pdb.record_business_event(event_, LEAD, NOW + dt.timedelta(minutes=5)).run(db)
    # the lead opts out with a text of their own (a new conversation on the line)
    items.append(("user", STOP))
    transcript = chat("chat_zq", items, conversation_id=talk, message_id=step, start_ms=start)
    assert retell(db, event("chat_ended", transcript), 6)["inbound"] == 1
    assert scalar(db, "select opt_out_source from pgflow.contacts") == "phrase"
    # a job that failed with the number in its traceback
    db.execute(
        "insert into pgflow.pgqueuer_log (job_id, status, priority, entrypoint, traceback)"
        " values (1, 'exception', 0, 'send_sms', %s)",
        [psycopg.types.json.Jsonb({"error": f"Retell refused {LEAD}"})],
    )
    return {"contact_id": lead["contact_id"], "conversation_id": talk}


def text_columns(db: Conn) -> list[tuple[str, str, str]]:
    """(table, column, type) of every text-like column of every table in schema pgflow."""
    return [
        (r[0], r[1], r[2])
        for r in rows(
            db,
            "select c.table_name, c.column_name, c.data_type"
            " from information_schema.columns c"
            " join information_schema.tables t using (table_schema, table_name)"
            " where c.table_schema = 'pgflow' and t.table_type = 'BASE TABLE'"
            " and c.data_type in ('text', 'character varying', 'character', 'jsonb', 'json',"
            " 'bytea', 'ARRAY', 'USER-DEFINED')"
            " order by 1, 2",
        )
    ]


def traces(db: Conn, needles: list[str]) -> list[str]:
    """Every (table.column: needle) where a needle appears, in any case."""
    found = []
    for table, column, kind in text_columns(db):
        value = sql.SQL("encode({}, 'escape')" if kind == "bytea" else "{}::text").format(
            sql.Identifier(column)
        )
        query = sql.SQL(
            "select n from unnest(%s::text[]) n where exists (select 1 from {} x"
            " where strpos(lower({}), lower(n)) > 0)"
        ).format(sql.Identifier("pgflow", table), value)
        for (needle,) in db.execute(query, [needles]).fetchall():
            found.append(f"{table}.{column}: {needle!r}")
    return found


def test_forget_leaves_no_trace_and_keeps_the_suppression_and_the_funnel(
    db_url: str, db: Conn
) -> None:
    ids = history(db)
    bodies = [
        r[0]
        for r in rows(db, "select body from pgflow.messages where kind <> 'system' order by id")
    ]
    for text in (REPLY, AGENT_REPLY, TWILIO_TEXT, HUMAN, PERSON_REPLY, STOP):
        assert text in bodies
    needles = [LEAD, LEAD[1:], LEAD[2:], LEAD_RAW, FIRST, LAST, EMAIL, STREET, IP, AGENT_STRING]
    needles += bodies
    assert len(traces(db, needles)) > 20  # the scan finds what is there
    funnel = pdb.funnel().run(db)

    reason = f"email from {FIRST} {LAST} ({EMAIL}), ticket 88"
    result = run(db_url, "forget", LEAD_RAW, "--yes", "--reason", reason, "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["result"] == "forgotten"
    assert answer["contact_id"] == ids["contact_id"]
    assert answer["suppression_source"] == "phrase"
    assert answer["removed"]["messages"] == len(bodies) + 2  # and two confirmations

    assert traces(db, needles) == []
    assert pdb.funnel().run(db) == funnel
    # the system texts (our words: the confirmations) are erased on the row too
    assert {r[0] for r in rows(db, "select body from pgflow.messages")} == {"[erased]"}
    assert row(
        db,
        "select phone, first_name, email, attributes, forgotten_is_set, opted_out, source"
        " from (select *, forgotten_at is not null as forgotten_is_set,"
        " opted_out_at is not null as opted_out, opt_out_source as source"
        " from pgflow.contacts) c",
    ) == (None, None, None, {}, True, True, "phrase")
    assert row(db, "select source, forgotten_at is not null from pgflow.suppressions") == (
        "phrase",
        True,
    )
    assert row(db, "select requested_by, reason from pgflow.erasures") == (
        "cli:dana",
        "email from [erased] [erased] ([erased]), ticket 88",
    )
    assert row(
        db, "select actor, action, contact_id from pgflow.audit_log where action = 'forget'"
    ) == (
        "cli:dana",
        "forget",
        ids["contact_id"],
    )
    # proof of consent stays: when, how and the disclosure; the person's request goes
    assert row(
        db, "select given_at, source, disclosure, ip, user_agent, request from pgflow.consents"
    ) == (at("2026-11-23 14:58"), "landing page", DISCLOSURE, None, None, None)
    # nothing is sent to the row again
    assert count(db, "messages", "delivery_status in ('pending', 'queued')") == 0
    assert count(db, "enrollments", "status in ('active', 'paused')") == 0

    # a new lead with the number (the webhook's own path) arrives opted out and gets no text
    payload = {"campaign": "solar", "phone": LEAD_RAW, "first_name": "Zeb"}
    again = intake.ingest(db, intake.prepare(payload, now=NOW + dt.timedelta(days=1)))
    assert again["status"] == "suppressed"
    assert again["enrollment_id"] is None
    assert again["contact_id"] != ids["contact_id"]
    assert row(
        db,
        "select action, source from pgflow.opt_outs where contact_id = %s",
        [again["contact_id"]],
    ) == ("opt_out", "phrase")
    assert count(db, "messages", "contact_id = %s", [again["contact_id"]]) == 0
    # a text from the number: treated as from an opted-out contact, no answer queued
    jobs = count(db, "pgqueuer")
    assert twilio_text(db, "hello again", "SM" + "9" * 32, 60 * 25)["result"] == (
        "ignored_opted_out"
    )
    assert retell(db, inbound(LEAD, LINE), 60 * 25)["result"] == "suppressed_rejected"
    assert count(db, "pgqueuer") == jobs
    # START from the number lifts it, and the suppression with it
    started = twilio_text(db, "START", "SM" + "a" * 32, 60 * 26)
    assert started["effect"] == "opt_in"
    assert count(db, "suppressions") == 0
    assert scalar(db, "select opted_out_at from pgflow.contacts where phone = %s", [LEAD]) is None


def test_consent_shows_each_consent_and_opt_out_before_and_after_forget(
    db_url: str, db: Conn
) -> None:
    history(db)
    shown = run(db_url, "consent", LEAD_RAW)
    assert shown.exit_code == 0, shown.output
    for expected in (DISCLOSURE, IP, AGENT_STRING, "landing page", STOP, "phrase", "+1212***0147"):
        assert expected in shown.output, expected
    assert LEAD not in shown.output
    record = json.loads(run(db_url, "consent", LEAD, "--json").output)
    assert record["suppressed"] is False
    [contact] = record["contacts"]
    [consent] = contact["consents"]
    assert consent["request"]["phone"] == LEAD_RAW
    assert consent["request"]["consent"]["ip"] == IP
    assert [(o["action"], o["source"], o["text"]) for o in contact["opt_outs"]] == [
        ("opt_out", "phrase", STOP)
    ]

    assert run(db_url, "forget", LEAD, "--yes").exit_code == 0
    after = json.loads(run(db_url, "consent", LEAD, "--json").output)
    assert after["suppressed"] is True
    [gone] = after["contacts"]
    assert gone["phone"] is None
    assert gone["forgotten_at"] is not None
    assert [(c["disclosure"], c["ip"], c["request"]) for c in gone["consents"]] == [
        (DISCLOSURE, None, None)
    ]
    assert [(o["action"], o["text"]) for o in gone["opt_outs"]] == [("opt_out", "[erased]")]
    assert gone["erasure"]["requested_by"] == "cli:dana"
    human = run(db_url, "consent", LEAD)
    assert human.exit_code == 0, human.output
    assert "forgotten" in human.output
    assert DISCLOSURE in human.output
    # a new lead: two contacts for the number, the forgotten one first
    lead_with_consent(db)
    both = json.loads(run(db_url, "consent", LEAD, "--json").output)["contacts"]
    assert [c["forgotten_at"] is None for c in both] == [False, True]
    assert both[1]["consents"][0]["ip"] == IP


def test_forget_refuses_without_a_person_to_confirm(db_url: str, db: Conn) -> None:
    apply_campaign(db, **OPEN)
    ingest(db, LEAD, NOW, first_name=FIRST)
    refused = run(db_url, "forget", LEAD)
    assert refused.exit_code == 1
    assert "pass --yes" in refused.output
    assert count(db, "erasures") == 0
    missing = run(db_url, "forget", "2125550199", "--yes")
    assert missing.exit_code == 1
    assert "no contact with number +1212***0199" in missing.output
    assert run(db_url, "consent", "2125550199").exit_code == 1


def test_forget_asks_at_a_terminal(db_url: str, db: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    apply_campaign(db, **OPEN)
    ingest(db, LEAD, NOW, first_name=FIRST)
    funnel = pdb.funnel().run(db)
    monkeypatch.setattr(contacts, "_interactive", lambda: True)
    declined = run(db_url, "forget", LEAD, input="n\n")
    assert declined.exit_code == 1
    assert "was not forgotten" in declined.output
    assert count(db, "erasures") == 0
    agreed = run(db_url, "forget", LEAD, input="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert "+1212***0147 stays suppressed (erasure)" in agreed.output
    assert LEAD not in agreed.output
    # mid-drip: the drip stops, the queued step is suppressed, the funnel stays
    assert row(db, "select status, stop_reason from pgflow.enrollments") == (
        "stopped",
        "the contact was forgotten on request",
    )
    assert scalar(db, "select delivery_status from pgflow.messages") == "suppressed"
    assert scalar(db, "select status from pgflow.conversations") == "open"
    assert pdb.funnel().run(db) == funnel
    # never opted out before: the erasure is the opt-out, recorded as such
    assert row(db, "select action, source, text from pgflow.opt_outs") == (
        "opt_out",
        "erasure",
        "forgotten on request",
    )


def test_a_forgotten_contacts_late_chat_and_receipt_bring_nothing_back(db: Conn) -> None:
    ids = history(db)
    pdb.forget_contact(LEAD, "cli:dana").run(db)
    late = chat(
        "chat_zq", [("user", "late text zq-late-7")], conversation_id=ids["conversation_id"]
    )
    assert retell(db, event("chat_analyzed", late), 90)["result"] == "forgotten"
    receipt = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "delivered", "To": LEAD}
    step = scalar(db, "select min(id) from pgflow.messages")
    pdb.record_twilio_status(step, receipt, NOW + dt.timedelta(hours=2)).run(db)
    assert traces(db, [LEAD, "zq-late-7"]) == []


def test_retention_keeps_consents_opt_outs_suppressions_and_erasures(db: Conn) -> None:
    history(db)
    pdb.forget_contact(LEAD, "cli:dana").run(db)
    kept = ("consents", "opt_outs", "suppressions", "erasures")
    before = {table: count(db, table) for table in kept}
    assert all(before.values())
    db.execute("select pgflow.prune(%s)", [NOW + dt.timedelta(days=365 * 5)])
    assert {table: count(db, table) for table in kept} == before


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ({"state": "ny"}, "NY"),
        ({"state": " Tx "}, "TX"),
        ({"state": "new  YORK"}, "NY"),
        ({"state": "N.Y."}, "NY"),
        ({"state": "Quebec"}, "QC"),
        ({"state": "xq"}, "XQ"),  # a code we do not know: kept, the strictest rules later
        ({"state": "Atlantis"}, "ZZ"),
        ({"state": 12}, "ZZ"),
        ({"address": {"state": "florida", "city": "Miami"}}, "FL"),
        ({"state": ""}, None),
        ({}, None),
    ],
)
def test_the_leads_state(module_db: Conn, given: dict[str, Any], stored: str | None) -> None:
    assert scalar(module_db, "select pgflow._state_code(%s)", [pdb_json(given)]) == stored


def pdb_json(value: Any) -> Any:
    return psycopg.types.json.Jsonb(value)


def test_a_bad_state_never_refuses_a_lead_and_the_payload_keeps_it(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    assert ingest(db, LEAD, NOW, state="Somewhere, USA")["status"] == "created"
    assert scalar(db, "select state from pgflow.contacts") == "ZZ"
    assert scalar(db, "select payload ->> 'state' from pgflow.lead_events") == "Somewhere, USA"
    assert ingest(db, LEAD, NOW, state="ca")["status"] == "already_enrolled"
    assert scalar(db, "select state from pgflow.contacts") == "CA"


def test_every_lead_with_consent_leaves_a_consent_record(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    apply_campaign(db, "roofs", **OPEN)
    lead_with_consent(db)
    later = ingest(
        db, LEAD, NOW + dt.timedelta(hours=1), campaign="roofs", consent={"text": "Roof texts, ok"}
    )
    assert later["status"] == "created"
    assert rows(
        db,
        "select c.given_at, c.source, c.disclosure, c.ip, c.user_agent, l.contact_id = c.contact_id"
        " from pgflow.consents c join pgflow.lead_events l on l.id = c.lead_event_id"
        " order by c.id",
    ) == [
        (at("2026-11-23 14:58"), "landing page", DISCLOSURE, IP, AGENT_STRING, True),
        (NOW + dt.timedelta(hours=1), None, "Roof texts, ok", None, None, True),
    ]
    # the contact's own record stays the first consent's
    assert scalar(db, "select consent_text from pgflow.contacts") == DISCLOSURE


@pytest.mark.parametrize(
    ("consent", "detail"),
    [
        ({"ip": "1" * 65}, "consent.ip must be a string of at most 64 characters"),
        ({"ip": 203}, "consent.ip must be a string of at most 64 characters"),
        ({"user_agent": "x" * 513}, "consent.user_agent must be a string of at most 512"),
    ],
)
def test_consent_ip_and_user_agent_are_short_strings(
    db: Conn, consent: dict[str, Any], detail: str
) -> None:
    apply_campaign(db, **OPEN)
    result = ingest(db, LEAD, NOW, consent=consent)
    assert result["status"] == "rejected"
    assert result["error"] == "invalid_payload"
    assert result["detail"].startswith(detail)
    assert count(db, "consents") == 0


def test_a_csv_import_reads_state_and_consent_and_suppresses_a_forgotten_number(
    db_url: str, db: Conn, tmp_path: Path
) -> None:
    apply_campaign(db, **OPEN)
    ingest(db, "+12125550148", NOW, first_name=FIRST)
    pdb.forget_contact("+12125550148", "cli:dana").run(db)
    path = tmp_path / "leads.csv"
    path.write_text(
        "phone,first_name,State,consent_text,consent_ip,consent_user_agent\n"
        f"{LEAD_RAW},Ana,Texas,{DISCLOSURE},{IP},{AGENT_STRING}\n"
        "212-555-0148,Zeb,ny,,,\n",
        encoding="utf-8",
    )
    importer = typer.Typer()
    importer.add_typer(leads_cli.app, name="leads")
    result = CliRunner().invoke(
        importer,
        ["leads", "import", str(path), "--campaign", "solar", "--json"],
        env={"DATABASE_URL": db_url},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["created"], summary["suppressed"]) == (1, 1)
    assert rows(
        db,
        "select phone, state, opted_out_at is not null from pgflow.contacts"
        " where phone is not null order by id",
    ) == [
        (LEAD, "TX", False),
        ("+12125550148", "NY", True),
    ]
    assert row(db, "select disclosure, ip, user_agent from pgflow.consents") == (
        DISCLOSURE,
        IP,
        AGENT_STRING,
    )
    assert (
        count(
            db,
            "messages",
            "contact_id = (select id from pgflow.contacts where phone = '+12125550148')",
        )
        == 0
    )


def test_forget_names_who_asks_and_an_existing_number(db: Conn) -> None:
    apply_campaign(db, **OPEN)
    ingest(db, LEAD, NOW)
    with pytest.raises(errors.InvalidInput):
        pdb.forget_contact(LEAD, " ").run(db)
    with pytest.raises(errors.NotFound):
        pdb.forget_contact("+12125550199", "cli:dana").run(db)
    with pytest.raises(errors.NotFound):
        pdb.contact_consent("+12125550199").run(db)


def test_the_hash_key_is_read_by_no_role(db: Conn, login_url: Any) -> None:
    for role in ("pgflow_operator", "pgflow_reader", "pgflow_web", "pgflow_worker"):
        with (
            psycopg.connect(login_url(role)) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("select value from pgflow.secrets")
