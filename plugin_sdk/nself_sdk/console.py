"""Output helpers for plugin commands: the same look as the core commands, and every line
scrubbed of the secret values nself has seen (``scrub``)."""

from __future__ import annotations

from nself.console import emit_json, error, paint, state, warn
from nself.redact import scrub


def info(message: str = "") -> None:
    print(scrub(message))


def ok(message: str) -> None:
    print(f"{paint('✓', 'green')} {scrub(message)}")


__all__ = ["emit_json", "error", "info", "ok", "paint", "state", "warn"]
