"""The set-based lead import (pgflow.import_leads) leaves exactly what row-by-row ingest_lead
calls leave: one file, every edge case ingest_lead has, imported both ways into two fresh
databases with the same history, then every row the import touches compared (ids and the
queue's wall-clock times normalised)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from pgflow import db as pdb
from pgflow import leads
from pgflow.cli import leads as leads_cli
from tests.conftest import create_clone, drop_database, with_database
from tests.factories import apply_campaign, at, ingest
from tests.helpers import scalar

Conn = psycopg.Connection[Any]

BEFORE = at("2026-12-01 14:00")  # the history: 09:00 in New York
NOW = at("2026-12-01 16:00")  # the import: 11:00 in New York, 08:00 in Los Angeles

HEADER = (
    "Phone,First Name,Last Name,Email,Timezone,State,External ID,Roof Age,Plan,"
    "consent_text,consent_at,consent_source,consent_ip,consent_user_agent"
)
LONG = "x" * 201
# One line per case; the comment says what ingest_lead does with it.
ROWS = [
    # 2: a new number with everything, consent with ip and user agent
    "(212) 555-0101,Ana,Lee,ana@example.com,,NY,,12,,I agree,2026-11-20T10:00:00Z,form,"
    "10.0.0.1,UA/1",
    # 3: a new number in Los Angeles (its window opens at 09:00 there), state by name
    "+1 310 555 0102,Bo,,,,california,,,gold,,,,,",
    # 4: an empty line
    "",
    # 5: row 2 again in another format: the contact changes after step 1 went, its
    #    explicit zone wins over the inferred one, a second consent does not replace the first
    "212-555-0101,Anna,,anna@example.com,America/Chicago,,,14,silver,Again,,,,",
    # 6-8: no phone number
    "555-01,Bad,,,,,,,,,,,,",
    ",NoPhone,,,,,,,,,,,,",
    "abc-def-ghij,Letters,,,,,,,,,,,,",
    # 9: an international number (its zone inferred)
    "+44 20 7946 0958,Liz,,,,,,,,,,,,",
    # 10: an unknown zone: refused; 11: the same number accepted, zone with spaces, an
    #     unknown state (the strictest rules), consent at a local time without a zone
    "813-555-0103,Flo,,,Mars/Base,FL,,,,,,,,",
    "813-555-0103,Flo,,,  America/New_York ,Narnia,,,,,2026-11-20 10:00,,,",
    # 12: not an email: refused; 13: the same number with an email, a state code we do not
    #     know, its own external id
    "(415) 555-0104,Em,,not-an-email,,,,,,,,,,",
    "4155550104,Em,,em@example.com,,xx,crm-7,,,,,,,",
    # 14: opted out before: suppressed
    "(646) 555-0105,Opted,,,,,,,,,,,,",
    # 15, 16: a forgotten number, twice: suppressed by the keyed-hash suppression
    "(646) 555-0106,Forgot,,,,,,,,yes,,,,",
    "646.555.0106,Forgot2,,,,,,,,,,,,",
    # 17: enrolled in this campaign already
    "(718) 555-0107,Enrolled,,,,,,,,,,,,",
    # 18: a contact of another campaign: its consent and zone stay, attributes merge
    "(917) 555-0108,Other,,,,n.y.,,3,,new consent,,,,",
    # 19-20: a quoted cell over two lines
    '"(917) 555-0109","Multi\nLine",,,,,,,,,,,,',
    # 21: a name longer than 200 characters: invalid_payload
    f"(303) 555-0114,{LONG},,,,,,,,,,,,",
    # 22: consent.at that is no time; 23: consent.ip too long
    "(303) 555-0110,Consent,,,,,,,,,yesterday-ish,,,",
    f"(303) 555-0111,IP,,,,,,,,x,,,{'1' * 70},",
    # 24: a NUL character: the database cannot take it (reject_lead)
    "(303) 555-0112,Nul\x00,,,,,,,,,,,,",
    # 25: consent at with an offset and a source of its own, an explicit zone
    "(503) 555-0113,Late,,,America/Phoenix,,,,,ok,2026-11-21T00:00:00-05:00,crm,,",
    # 26: a line of blanks
    "  ,  ,,,,,,,,,,,,",
    # 27: row 2's number a third time
    "(212) 555-0101,,Lee-Smith,,,,,,,Third,,,,",
    # 28, 29: row 25's number again without a zone (Phoenix stays), the last name and plan win
    "503-555-0113,Late2,,,,,,,a,,,,,",
    "5035550113,Late3,,,,,,,b,,,,,",
    # 30, 31: row 3's number (no consent yet) twice with consent: the first one is kept
    "3105550102,,,,,,,,,first later consent,,,,",
    "310.555.0102,,,,,,,,,second later consent,,,,",
]
CSV_TEXT = HEADER + "\n" + "\n".join(ROWS) + "\n"


def history(conn: Conn) -> None:
    """What both databases hold before the import (the same calls, the same clock)."""
    apply_campaign(conn, "solar")
    apply_campaign(conn, "later", steps=[{"delay": "1 hour", "body": "Hi {{first_name}}"}])
    apply_campaign(conn, "paused", status="paused")
    apply_campaign(
        conn, "other", from_number="+14155550199", window_start="00:00", window_end="23:59"
    )
    opted = ingest(conn, "(646) 555-0105", BEFORE, "other")
    pdb.opt_out_contact(opted["contact_id"], "operator", now=BEFORE).run(conn)
    ingest(conn, "(646) 555-0106", BEFORE, "other")
    pdb.forget_contact("+16465550106", "cli:test", now=BEFORE).run(conn)
    ingest(conn, "(718) 555-0107", BEFORE, "solar", first_name="Old")
    ingest(
        conn,
        "(917) 555-0108",
        BEFORE,
        "other",
        first_name="Ot",
        timezone="America/Denver",
        attributes={"plan": "bronze", "roof_age": "1"},
        consent={"text": "old consent", "at": "2026-11-01T00:00:00Z"},
    )


@pytest.fixture
def two_dbs(server_url: str, template_db: str) -> Iterator[tuple[Conn, Conn]]:
    """Two fresh databases with the same history."""
    names = [create_clone(server_url, template_db) for _ in range(2)]
    conns = [psycopg.connect(with_database(server_url, n), autocommit=True) for n in names]
    try:
        for conn in conns:
            history(conn)
        yield conns[0], conns[1]
    finally:
        for conn in conns:
            conn.close()
        for name in names:
            drop_database(server_url, name)


def import_file(
    conn: Conn, path: Path, campaign: str, bulk: bool, chunk: int
) -> list[tuple[Any, ...]]:
    """The file imported twice (the second time finds it all in the database); the outcomes."""
    outcomes: list[tuple[Any, ...]] = []
    for _ in range(2):
        with leads.LeadFile(path) as lead_file:
            if bulk:
                summary = leads.import_rows_bulk(
                    conn, lead_file.rows(), campaign, "csv:leads.csv", now=NOW, chunk_rows=chunk
                )
            else:
                summary = leads.import_rows(
                    conn, lead_file.rows(), campaign, "csv:leads.csv", now=NOW
                )
        assert summary.file_error is None
        outcomes.append(tuple(sorted(summary.as_dict().items(), key=lambda kv: kv[0])))
    return [tuple((k, _strip_ids(v)) for k, v in o) for o in outcomes]


def _strip_ids(value: Any) -> Any:
    if isinstance(value, list):
        return [{k: v for k, v in e.items() if k != "contact_id"} for e in value]
    return value


# --- what the import leaves, with ids replaced by what the rows are ----------------------


def table(conn: Conn, name: str) -> list[dict[str, Any]]:
    rows = conn.execute(f"select to_jsonb(t) from pgflow.{name} t order by id").fetchall()
    return [r[0] for r in rows]


def snapshot(conn: Conn) -> dict[str, list[str]]:
    """Every row of the tables an import writes, ids normalised, as sorted JSON texts."""
    contacts = table(conn, "contacts")
    contact_key = {c["id"]: c["phone"] or f"forgotten:{c['forgotten_at']}" for c in contacts}
    enrollments = table(conn, "enrollments")
    enrollment_key = {
        e["id"]: f"{contact_key[e['contact_id']]}/{e['campaign_id']}" for e in enrollments
    }
    conversations = table(conn, "conversations")
    conversation_key = {
        c["id"]: f"{contact_key[c['contact_id']]}/{c['from_number']}/{c['created_at']}"
        for c in conversations
    }
    messages = table(conn, "messages")
    message_key = {
        m["id"]: f"{conversation_key[m['conversation_id']]}/{m['kind']}/{m['step_position']}"
        f"/{m['created_at']}"
        for m in messages
    }
    lead_events = table(conn, "lead_events")
    event_key = {
        e["id"]: f"{e['source']}/{e['external_id']}/{e['received_at']}" for e in lead_events
    }
    keys = {
        "contact": contact_key,
        "enrollment": enrollment_key,
        "conversation": conversation_key,
        "message": message_key,
    }

    def swap(row: dict[str, Any], **refs: dict[int, str]) -> str:
        out = dict(row)
        out.pop("id", None)
        for column, mapping in refs.items():
            if out.get(column) is not None:
                out[column] = mapping[out[column]]
        return json.dumps(out, sort_keys=True)

    found: dict[str, list[str]] = {
        "contacts": [swap({**c, "key": contact_key[c["id"]]}) for c in contacts],
        "enrollments": [swap(e, contact_id=contact_key) for e in enrollments],
        "conversations": [
            swap(c, contact_id=contact_key, enrollment_id=enrollment_key) for c in conversations
        ],
        "messages": [
            swap(
                {
                    **m,
                    "dedupe_key": m["dedupe_key"].replace(
                        str(m["enrollment_id"]), enrollment_key.get(m["enrollment_id"], "?")
                    ),
                },
                conversation_id=conversation_key,
                contact_id=contact_key,
                enrollment_id=enrollment_key,
            )
            for m in messages
        ],
        "lead_events": [
            swap(e, contact_id=contact_key, enrollment_id=enrollment_key) for e in lead_events
        ],
        "consents": [
            swap(c, contact_id=contact_key, lead_event_id=event_key)
            for c in table(conn, "consents")
        ],
        "opt_outs": [swap(o, contact_id=contact_key) for o in table(conn, "opt_outs")],
        "events": [
            swap({**e, "entity_id": keys[e["entity"]][e["entity_id"]]})
            if e["entity"] in keys
            else swap(e)
            for e in table(conn, "events")
        ],
        "jobs": [],
    }
    for job in table(conn, "pgqueuer"):
        payload = json.loads(bytes.fromhex(job["payload"][2:]))
        message = message_key[payload["id"]]
        found["jobs"].append(
            json.dumps(
                {
                    "entrypoint": job["entrypoint"],
                    "priority": job["priority"],
                    "status": job["status"],
                    "message": message,
                    "dedupe_key": job["dedupe_key"].replace(str(payload["id"]), message),
                },
                sort_keys=True,
            )
        )
    return {name: sorted(rows) for name, rows in found.items()}


def assert_same(one: dict[str, list[str]], other: dict[str, list[str]]) -> None:
    for name in one:
        only_one = sorted(set(one[name]) - set(other[name]))
        only_other = sorted(set(other[name]) - set(one[name]))
        assert (name, only_one, only_other) == (name, [], []), "row by row / set-based differ"
        assert one[name] == other[name], name  # the same rows the same number of times


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "leads.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("campaign", "chunk"),
    [
        ("solar", leads.CHUNK_ROWS),  # the whole file in one set-based call
        ("solar", 4),  # a number's rows in several chunks
        ("later", leads.CHUNK_ROWS),  # step 1 not due yet: nothing sent at once
        ("paused", leads.CHUNK_ROWS),  # refused: campaign_inactive
        ("nope", leads.CHUNK_ROWS),  # refused: unknown_campaign
    ],
)
def test_set_based_import_leaves_what_row_by_row_leaves(
    two_dbs: tuple[Conn, Conn], csv_file: Path, campaign: str, chunk: int
) -> None:
    row_by_row, bulk = two_dbs
    expected = import_file(row_by_row, csv_file, campaign, bulk=False, chunk=chunk)
    got = import_file(bulk, csv_file, campaign, bulk=True, chunk=chunk)
    assert got == expected
    before, after = snapshot(row_by_row), snapshot(bulk)
    assert_same(before, after)
    if campaign == "solar":
        # the file did reach every path it was written for
        assert (
            scalar(bulk, "select count(*) from pgflow.messages where delivery_status = 'queued'")
            > 0
        )
        assert (
            scalar(
                bulk,
                "select count(*) from pgflow.enrollments where next_message_at > %s"
                " and next_step = 1",
                [NOW],
            )
            > 0
        )  # Los Angeles waits for 09:00
        results = dict(
            bulk.execute(
                "select result, count(*) from pgflow.lead_events where received_at = %s group by 1",
                [NOW],
            ).fetchall()
        )
        assert set(results) == {"created", "already_enrolled", "suppressed", "rejected"}
        assert (
            scalar(bulk, "select count(*) from pgflow.consents where recorded_at = %s", [NOW]) > 0
        )
        reasons = {
            r[0]
            for r in bulk.execute(
                "select error_code from pgflow.lead_events where result = 'rejected'"
            ).fetchall()
        }
        assert reasons == {"invalid_phone", "invalid_payload", "invalid_email", "invalid_timezone"}


def test_the_set_based_call_refuses_payloads_of_another_campaign(
    two_dbs: tuple[Conn, Conn],
) -> None:
    conn = two_dbs[0]
    with pytest.raises(Exception, match="every payload must name campaign"):
        conn.execute(
            "select * from pgflow.import_leads('solar', 'x', array[2], array[%s::jsonb],"
            " array['+12125550101'], array[null], array[null])",
            [json.dumps({"campaign": "other", "source": "x", "phone": "2125550101"})],
        )


# --- the command ------------------------------------------------------------------------


def conn_url(conn: Conn) -> str:
    info = conn.info
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"


cli = typer.Typer()
cli.add_typer(leads_cli.app, name="leads")


def test_the_command_reports_the_same_both_ways(
    two_dbs: tuple[Conn, Conn], csv_file: Path, tmp_path: Path
) -> None:
    answers: list[tuple[Any, ...]] = []
    for conn, flags in ((two_dbs[0], ["--row-by-row"]), (two_dbs[1], [])):
        errors_file = tmp_path / f"errors{len(answers)}.csv"
        url = conn_url(conn)
        args = [
            "leads",
            "import",
            str(csv_file),
            "--campaign",
            "solar",
            "--json",
            "--errors-file",
            str(errors_file),
            *flags,
        ]
        result = CliRunner().invoke(cli, args, env={"DATABASE_URL": url})
        assert result.exit_code == 2, result.output
        summary = json.loads(result.stdout)
        answers.append(
            (
                _strip_ids(summary["errors"]),
                summary["created"],
                summary["already_enrolled"],
                summary["suppressed"],
                summary["rejected"],
                errors_file.read_text(encoding="utf-8"),
            )
        )
    assert answers[0] == answers[1]
    errors, created, already, suppressed, rejected, errors_csv = answers[1]
    assert (created, already, suppressed, rejected) == (8, 7, 3, 9)
    assert [e["line"] for e in errors] == [6, 7, 8, 10, 12, 21, 22, 23, 24]
    assert "+12125550101" not in errors_csv  # masked
