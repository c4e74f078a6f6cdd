"""Phone numbers at the edge: E.164, zone inference, masking for logs."""

from __future__ import annotations

import pytest

from pgflow.phones import mask, normalize


@pytest.mark.parametrize(
    ("raw", "e164", "zone"),
    [
        ("(415) 555-0123", "+14155550123", "America/Los_Angeles"),
        ("415.555.0123", "+14155550123", "America/Los_Angeles"),
        ("1-212-555-0199", "+12125550199", "America/New_York"),
        ("+1 212 555 0199", "+12125550199", "America/New_York"),
        ("  2125550199 ", "+12125550199", "America/New_York"),
        ("+44 20 7946 0958", "+442079460958", "Europe/London"),
        ("+1 800 555 0100", "+18005550100", None),  # toll-free: no zone
    ],
)
def test_normalize(raw: str, e164: str, zone: str | None) -> None:
    result = normalize(raw)
    assert (result.e164, result.error, result.timezone) == (e164, None, zone)
    assert result.as_edge() == {"phone": e164, "phone_error": None, "timezone": zone}


@pytest.mark.parametrize("raw", ["", "12", "call me", "555-01", "+1 212 100 0000"])
def test_normalize_rejects_with_a_reason(raw: str) -> None:
    result = normalize(raw)
    assert result.e164 is None
    assert result.error


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+14155550123", "+1415***0123"),
        ("+447911123456", "+44791***3456"),
        ("+353851234567", "+353851***4567"),
        (" +14155550123 ", "+1415***0123"),
        ("4155550123", "***0123"),
        ("+1415555", "***"),
        ("12345", "***"),
        ("", "***"),
        ("+", "***"),
        ("call me", "***"),
    ],
)
def test_mask(phone: str, masked: str) -> None:
    assert mask(phone) == masked


def test_mask_none() -> None:
    assert mask(None) == "***"
