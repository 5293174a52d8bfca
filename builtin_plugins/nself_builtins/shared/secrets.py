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


SCRAM_ITERATIONS = 4096


def scram_verifier(
    password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`` form PostgreSQL stores: setting a
    role's password with it, the server (and its logs) never see the password itself."""
    import base64
    import hashlib
    import hmac

    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
