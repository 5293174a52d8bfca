"""Output helpers for plugin commands: the same look as the core commands, and every line
scrubbed of the secret values nself has seen (``scrub``)."""

from __future__ import annotations

import sys

from nself.console import emit_json, error, paint, state
from nself.redact import scrub


def info(message: str = "") -> None:
    print(scrub(message))


def warn(message: str, hint: str | None = None) -> None:
    print(f"{paint('warning:', 'yellow', sys.stderr)} {scrub(message)}", file=sys.stderr)
    if hint:
        print(f"  {paint('hint:', 'dim', sys.stderr)} {scrub(hint)}", file=sys.stderr)


def ok(message: str) -> None:
    print(f"{paint('✓', 'green')} {scrub(message)}")


__all__ = ["emit_json", "error", "info", "ok", "paint", "state", "warn"]
