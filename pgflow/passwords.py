"""Console passwords: scrypt (memory-hard, in the standard library), self-describing hashes.

A hash reads `scrypt$<n>$<r>$<p>$<salt, base64>$<key, base64>`, so its cost travels with it
and can be raised later without breaking older hashes. Verifying takes ~50 ms and 16 MiB on
purpose: run it off the event loop (`asyncio.to_thread`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1  # 16 MiB per hash (128 * N * r bytes)
KEY_BYTES = 32
MAX_MEMORY = 256 * 1024 * 1024
MIN_LENGTH = 10
MAX_LENGTH = 1024
# Verified against when the email is unknown, so an unknown email costs as much as a wrong
# password (nobody learns which emails exist from the time a sign-in takes).
_DECOY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


class WeakPassword(ValueError):
    """A password the console refuses to store."""


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password has at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_LENGTH} characters")
    if not password.strip():
        raise WeakPassword("a password is not only spaces")


def hash_password(password: str) -> str:
    check_strength(password)
    salt = secrets.token_bytes(16)
    key = _derive(password, salt, N, R, P)
    return "$".join(["scrypt", str(N), str(R), str(P), base64.b64encode(salt).decode(), _b64(key)])


def verify_password(password: str, stored: str | None) -> bool:
    """True when `password` matches `stored`; a missing or malformed hash is False (after
    the same work as a real check)."""
    try:
        scheme, n, r, p, salt, key = (stored or _DECOY).split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        want = base64.b64decode(key)
        got = _derive(password[:MAX_LENGTH], base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        _derive(password[:MAX_LENGTH], b"decoy-salt-16byt", N, R, P)
        return False
    return stored is not None and hmac.compare_digest(got, want)


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=MAX_MEMORY, dklen=KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
