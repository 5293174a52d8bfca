"""Fresh secrets for the settings plugins declare with ``generate`` (``nself init`` writes
dev ones, ``nself secrets generate|rotate`` real ones)."""

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
