"""Privacy: proof of consent for a number, and erasure on request."""

from __future__ import annotations

from pgflow.db.core import Call, Now, Row, json_call


def contact_consent(phone: str) -> Call[Row]:
    """pgflow.contact_consent(): {phone, suppressed, contacts: [...]}: every contact the
    number has had (the live one and those forgotten since), each with its consents,
    opt-outs and opt-ins, and erasure. NotFound when the number never had a contact."""
    return json_call("contact_consent", phone)


def forget_contact(
    phone: str, requested_by: str, reason: str | None = None, now: Now = None
) -> Call[Row]:
    """pgflow.forget_contact(): the contact's personal data erased, its number kept as a
    keyed-hash suppression; {result, contact_id, erasure_id, forgotten_at,
    suppression_source, removed: {table: rows}}. NotFound when no contact has the number."""
    return json_call("forget_contact", phone, requested_by, reason, now)
