"""People: a person's hold on a lead (take over, reply, hand back, settle), console users and
sessions, and the reads behind the console's pages (sql/functions/console.sql)."""

from __future__ import annotations

from typing import Any, cast

from pgflow.db.core import Call, Now, Row, function_call, json_call, json_list_call


def take_over(
    conversation_id: int,
    actor: str,
    user_id: int | None = None,
    reason: str | None = None,
    now: Now = None,
) -> Call[Row]:
    """pgflow.take_over(): the person holds the lead; {result: held | unchanged, ...}."""
    return json_call("take_over", conversation_id, actor, user_id, reason, now)


def hand_back(
    conversation_id: int,
    actor: str,
    user_id: int | None = None,
    engine_replies: bool = False,
    now: Now = None,
) -> Call[Row]:
    """pgflow.hand_back(): the agent has the lead again; IllegalTransition when nobody held it."""
    return json_call("hand_back", conversation_id, actor, user_id, engine_replies, now)


def human_reply(
    conversation_id: int,
    body: str,
    actor: str,
    user_id: int | None = None,
    key: str | None = None,
    now: Now = None,
) -> Call[Row]:
    """pgflow.human_reply(): a person's text queued; Suppressed after STOP, InvalidInput."""
    return json_call("human_reply", conversation_id, body, actor, user_id, key, now)


def settle(
    conversation_id: int,
    status: str,
    reason: str | None,
    actor: str,
    user_id: int | None = None,
    now: Now = None,
) -> Call[Row]:
    """pgflow.settle(): a person's outcome, audited."""
    return json_call("settle", conversation_id, status, reason, actor, user_id, now)


def settle_dead_letters(
    action: str, ids: list[int], actor: str, user_id: int | None = None, now: Now = None
) -> Call[list[Row]]:
    """pgflow.settle_dead_letters(): requeue | discard, one {id, result, detail?} per id."""
    return json_list_call("settle_dead_letters", action, ids, actor, user_id, now)


def add_console_user(
    email: str,
    role: str,
    password_hash: str,
    actor: str,
    user_id: int | None = None,
    now: Now = None,
) -> Call[Row]:
    """pgflow.add_console_user(): {result: added | enabled, user_id, email, role}."""
    return json_call("add_console_user", email, role, password_hash, actor, user_id, now)


def change_console_user(
    email: str,
    action: str,
    actor: str,
    password_hash: str | None = None,
    user_id: int | None = None,
    now: Now = None,
) -> Call[Row]:
    """pgflow.change_console_user(): disable | password | revoke; sessions end."""
    return json_call("change_console_user", email, action, password_hash, actor, user_id, now)


def console_user_list(now: Now = None) -> Call[list[Row]]:
    return json_list_call("console_user_list", now)


def console_sign_in_user(email: str, now: Now = None) -> Call[Row]:
    """{email, user_id, role, password_hash, retry_after_seconds} (NULLs: unknown/disabled)."""
    return json_call("console_sign_in_user", email, now)


def record_sign_in(
    email: str,
    ok: bool,
    token_hash: bytes | None,
    ip: str | None,
    user_agent: str | None,
    now: Now = None,
) -> Call[Row]:
    return json_call("record_sign_in", email, ok, token_hash, ip, user_agent, now)


def console_session(token_hash: bytes, now: Now = None) -> Call[Row | None]:
    """The signed-in user {session_id, user_id, email, role}, or None."""
    return cast(Call[Row | None], function_call("console_session", token_hash, now))


def end_console_session(token_hash: bytes, now: Now = None) -> Call[Row]:
    return json_call("end_console_session", token_hash, now)


def inbox(
    filters: dict[str, Any],
    after: dict[str, Any] | None,
    limit: int = 50,
    now: Now = None,
) -> Call[Row]:
    """pgflow.inbox(): {rows: [...], next: cursor | None} (phones unmasked: people read them)."""
    return json_call("inbox", filters, after, limit, now)


def conversation_view(conversation_id: int, now: Now = None) -> Call[Row | None]:
    return cast(Call[Row | None], function_call("conversation_view", conversation_id, now))


def console_cursor() -> Call[str]:
    return cast(Call[str], function_call("console_cursor"))


def console_campaign_slugs() -> Call[list[str]]:
    return cast(Call[list[str]], function_call("console_campaign_slugs"))


def console_campaigns() -> Call[list[Row]]:
    return json_list_call("console_campaigns")


def console_alerts(limit: int = 200) -> Call[list[Row]]:
    return json_list_call("console_alerts", limit)


def console_review(limit: int = 200) -> Call[list[Row]]:
    return json_list_call("console_review", limit)


def console_dead_letters(campaign: str | None = None, limit: int = 200) -> Call[list[Row]]:
    return json_list_call("console_dead_letters", campaign, limit)


def sends_per_hour(
    campaign: str | None = None, hours: int = 24, now: Now = None
) -> Call[list[Row]]:
    return json_list_call("sends_per_hour", campaign, hours, now)
