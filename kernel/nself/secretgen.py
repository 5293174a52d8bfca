"""Strong secrets, and the checks that refuse weak ones outside dev."""

from __future__ import annotations

import secrets

KINDS = ("token", "password", "hex")


def generate(kind: str | None) -> str:
    """A fresh secret: url-safe token (43 chars), password (32 chars) or 64 hex digits."""
    if kind == "hex":
        return secrets.token_hex(32)
    if kind == "password":
        return secrets.token_urlsafe(24)
    return secrets.token_urlsafe(32)


WEAK_WORDS = ("changeme", "password", "secret", "admin", "devstub", "dev-stub", "example", "test")


def weakness(value: str, min_length: int) -> str | None:
    """Why ``value`` is too weak to protect a server, or ``None``."""
    if len(value) < max(min_length, 16):
        return f"shorter than {max(min_length, 16)} characters"
    low = value.lower()
    for word in WEAK_WORDS:
        if word in low and len(set(low.replace(word, ""))) < 10:
            return f"based on the word {word!r}"
    if len(set(value)) < 8:
        return "too few distinct characters"
    return None
