"""Sending through Twilio (a campaign with `transport: twilio`): one POST per text, exactly
as we wrote it, from the conversation's line, with a StatusCallback that carries our message
id and a ValidityPeriod from the claim (a drip text is dropped rather than delivered after
its send window). Twilio starts no chat and runs no LLM: our agent writes the replies and a
person's text goes out as written.

An answer that never came (a timeout, a dropped connection, a 5xx) may hide a message Twilio
created: it is looked for in Twilio's list (To, From, body, time) before anything is sent
again. When Twilio cannot even be asked, the text stays `sending` and its next claim
reconciles first (pgflow._claim_one's `reconcile`), so nothing is sent twice."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pgflow.jobs.context import JobContext
from pgflow.transport import TransportError
from pgflow.transport.twilio import (
    MAX_VALIDITY_SECONDS,
    TwilioClient,
    TwilioError,
    TwilioMessage,
)

NOT_CONFIGURED = (
    "the campaign's transport is twilio but this worker has no Twilio account: set "
    "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and PGFLOW_PUBLIC_URL, restart the worker, "
    "then requeue the dead letters"
)


def _client(ctx: JobContext) -> TwilioClient:
    if ctx.twilio is None:
        raise TwilioError(NOT_CONFIGURED, status_code=None, retryable=False, alert=True)
    return ctx.twilio


def sent(message: TwilioMessage, status_code: int) -> dict[str, Any]:
    """record_send's result for a text Twilio has (its SID; never a chat)."""
    return {
        "ok": True,
        "transport": "twilio",
        "provider_message_id": message.sid,
        "status_code": status_code,
    }


async def deliver(ctx: JobContext, claim: dict[str, Any], message_id: int) -> dict[str, Any]:
    """One POST; raises TwilioError (classified) when Twilio refuses or does not answer."""
    message = await _client(ctx).send(
        to=claim["to_number"],
        from_=claim["from_number"],
        body=claim["body"],
        message_id=message_id,
        validity_seconds=int(claim.get("validity_seconds") or MAX_VALIDITY_SECONDS),
    )
    return sent(message, 201)


async def find(ctx: JobContext, claim: dict[str, Any], since: dt.datetime) -> dict[str, Any] | None:
    """The text a send whose answer was lost may have created (raises TransportError when
    Twilio cannot be asked)."""
    found = await _client(ctx).find_sent(
        to=claim["to_number"], from_=claim.get("from_number"), body=claim["body"], since=since
    )
    return None if found is None else sent(found, 200)


def lost(exc: TransportError) -> bool:
    """The request may have reached Twilio although no answer came back."""
    if isinstance(exc, TwilioError):
        return exc.ambiguous  # a timeout, a dropped connection or a 5xx on the POST
    return exc.status_code is None


def carrier_code(exc: TransportError) -> int | None:
    """Twilio's error code of a refusal (21610, 21211, ...), which record_send acts on."""
    return exc.twilio_code if isinstance(exc, TwilioError) else None
