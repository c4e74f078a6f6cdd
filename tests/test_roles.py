"""Least-privilege roles: each login gets exactly what its component needs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerr

from tests.factories import apply_campaign
from tests.helpers import scalar

pytestmark = pytest.mark.real_clock  # see conftest.any_hour

Conn = psycopg.Connection[Any]


@pytest.fixture
def login(login_url: Callable[[str], str]) -> Callable[[str], Conn]:
    """A factory: an autocommit connection as a new login in the given role."""
    return lambda role: psycopg.connect(login_url(role), autocommit=True)


def test_web_can_take_leads_and_nothing_else(db: Conn, login: Any) -> None:
    apply_campaign(db)
    with login("pgflow_web") as web:
        result = scalar(
            web,
            "select pgflow.ingest_lead(%s::jsonb, %s)",
            [
                '{"campaign": "solar", "phone": "2125550147"}',
                dt.datetime(2026, 11, 23, 15, tzinfo=dt.UTC),
            ],
        )
        assert result["status"] == "created"
        assert scalar(web, "select pgflow.health() ? 'checks'")
        for statement in (
            "select * from pgflow.contacts",
            "delete from pgflow.lead_events",
            "select pgflow.tick()",
            "select pgflow.apply_campaigns('{}')",
            "insert into pgflow.pgqueuer (priority, entrypoint, status)"
            " values (0, 'send_sms', 'queued')",
        ):
            with pytest.raises(pgerr.InsufficientPrivilege):
                web.execute(statement)


def test_worker_can_claim_and_record_but_not_read_contacts(db: Conn, login: Any) -> None:
    apply_campaign(db, window_start="00:00", window_end="24:00")
    db.execute('select pgflow.ingest_lead(\'{"campaign": "solar", "phone": "2125550147"}\')')
    message = scalar(db, "select id from pgflow.messages")
    with login("pgflow_worker") as worker:
        claim = scalar(worker, "select pgflow.claim_message(%s)", [message])
        assert claim["action"] == "send"
        recorded = scalar(
            worker,
            "select pgflow.record_send(%s, 1, %s::jsonb)",
            [message, '{"ok": true, "chat_id": "c1"}'],
        )
        assert recorded == {"action": "sent"}
        assert scalar(worker, "select count(*) from pgflow.pgqueuer") == 1
        with pytest.raises(pgerr.InsufficientPrivilege):
            worker.execute("select phone from pgflow.contacts")
        with pytest.raises(pgerr.InsufficientPrivilege):
            worker.execute("select pgflow.requeue_dead_letters(array[1]::bigint[])")


def test_reader_reads_but_cannot_change(db: Conn, login: Any) -> None:
    apply_campaign(db)
    with login("pgflow_reader") as reader:
        assert scalar(reader, "select count(*) from pgflow.campaigns") == 1
        with pytest.raises(pgerr.InsufficientPrivilege):
            reader.execute("update pgflow.campaigns set status = 'paused'")
        with pytest.raises(pgerr.InsufficientPrivilege):
            reader.execute("select pgflow.ingest_lead('{}')")


def test_no_function_is_left_to_public(db: Conn) -> None:
    public = db.execute(
        "select p.proname from pg_proc p where p.pronamespace = 'pgflow'::regnamespace"
        " and has_function_privilege('public', p.oid, 'execute')"
        " and p.proname not like '%%pgqueuer%%'"
    ).fetchall()
    assert public == []


def test_entry_points_run_as_their_owner(db: Conn) -> None:
    """The roles hold no table privileges: every function they may call that reads or
    writes tables is SECURITY DEFINER (a `create or replace` that forgets it breaks them)."""
    invoker = db.execute(
        "select p.proname from pg_proc p where p.pronamespace = 'pgflow'::regnamespace"
        " and not p.prosecdef and p.provolatile <> 'i'"
        " and p.proname not like '%%pgqueuer%%'"
        " and (has_function_privilege('pgflow_web', p.oid, 'execute')"
        "   or has_function_privilege('pgflow_worker', p.oid, 'execute')"
        "   or has_function_privilege('pgflow_operator', p.oid, 'execute'))"
        " order by 1"
    ).fetchall()
    assert invoker == []


def test_web_and_worker_cannot_drop_truncate_or_read_elsewhere(db: Conn, login: Any) -> None:
    apply_campaign(db)
    db.execute("create table public.secrets_of_another_app (x int)")
    for role in ("pgflow_web", "pgflow_worker"):
        with login(role) as conn:
            for statement in (
                "drop table pgflow.messages",
                "truncate pgflow.contacts",
                "delete from pgflow.campaigns",
                "alter table pgflow.messages add column x int",
                "create table pgflow.mine (x int)",
                "select * from public.secrets_of_another_app",
                "select pgflow.apply_campaigns('{}')",
                "select pgflow.set_outcome(1, 'success', 'booked', 'human')",
            ):
                with pytest.raises(pgerr.InsufficientPrivilege):
                    conn.execute(statement)


def test_the_console_acts_through_the_web_role_alone(db: Conn, login: Any) -> None:
    apply_campaign(db, window_start="00:00", window_end="24:00")
    db.execute('select pgflow.ingest_lead(\'{"campaign": "solar", "phone": "2125550147"}\')')
    conversation = scalar(db, "select id from pgflow.conversations")
    take_over = "select pgflow.take_over(%s, 'dana@x.com')"
    with login("pgflow_web") as web:
        assert scalar(web, take_over, [conversation])["result"] == "held"
        reply = scalar(
            web, "select pgflow.human_reply(%s, 'Hi, Dana here', 'dana@x.com')", [conversation]
        )
        assert reply["result"] == "queued"
        handed = scalar(web, "select pgflow.hand_back(%s, 'dana@x.com')", [conversation])
        assert handed["result"] == "handed_back"
        with pytest.raises(pgerr.InsufficientPrivilege):
            web.execute("select pgflow._audit('x', null, 'reply', null, null, '{}', now())")
    with login("pgflow_worker") as worker, pytest.raises(pgerr.InsufficientPrivilege):
        worker.execute(take_over, [conversation])
    with login("pgflow_reader") as reader:
        assert [r["id"] for r in scalar(reader, "select pgflow.inbox()")["rows"]] == [conversation]
        with pytest.raises(pgerr.InsufficientPrivilege):
            reader.execute(take_over, [conversation])
