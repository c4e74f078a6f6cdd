"""Phone numbers at the edge: E.164 normalisation and time-zone inference (phonenumbers)."""

from __future__ import annotations

import dataclasses

import phonenumbers
from phonenumbers import timezone as pn_timezone

DEFAULT_REGION = "US"


@dataclasses.dataclass(frozen=True)
class Normalized:
    """The edge's view of a raw phone: E.164 (or None with the reason) and an inferred zone."""

    e164: str | None
    error: str | None = None
    timezone: str | None = None

    def as_edge(self) -> dict[str, str | None]:
        """The `p_edge` argument of pgflow.ingest_lead()."""
        return {"phone": self.e164, "phone_error": self.error, "timezone": self.timezone}


def normalize(raw: str, region: str = DEFAULT_REGION) -> Normalized:
    """E.164 for a number in any common national or international format."""
    text = raw.strip()
    if not text:
        return Normalized(None, "phone is empty")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        return Normalized(None, f"not a phone number ({exc._msg.rstrip('.').lower()})")
    if not phonenumbers.is_valid_number(number):
        return Normalized(None, "not a valid phone number for its country")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Normalized(e164, None, infer_timezone(number))


def infer_timezone(number: phonenumbers.PhoneNumber) -> str | None:
    """The number's IANA zone when it has exactly one (US area codes mostly do)."""
    zones = [z for z in pn_timezone.time_zones_for_number(number) if z != "Etc/Unknown"]
    return zones[0] if len(zones) == 1 else None


def mask(phone: str | None) -> str:
    """A phone number fit for logs: `+14155550123` -> `+1415***0123`.

    E.164 keeps the country code, three more digits and the last four; anything else keeps
    only the last four; numbers too short to hide anything are fully masked (`***`)."""
    if not phone:
        return "***"
    text = phone.strip()
    digits = text[1:] if text.startswith("+") else text
    if not digits.isascii() or not digits.isdigit():
        return "***"
    if text.startswith("+"):
        cc_len = _country_code_length(digits)
        keep = cc_len + 3
        if len(digits) >= keep + 4 + 2:
            return f"+{digits[:keep]}***{digits[-4:]}"
        return "***"
    if len(digits) >= 8:
        return f"***{digits[-4:]}"
    return "***"


def _country_code_length(digits: str) -> int:
    """Length of the calling code at the start of `digits` (codes are prefix-free)."""
    for length in (1, 2, 3):
        if int(digits[:length] or "0") in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return length
    return 1
