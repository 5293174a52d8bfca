"""Errors the CLI turns into one line plus a hint (exit 1), or a usage message (exit 2)."""

from __future__ import annotations

# Exit status of `nself start` / `nself health` when the stack runs but is degraded: an
# optional, plugin or custom service failed and was isolated, core services are up.
EXIT_DEGRADED = 3


class NselfError(Exception):
    """A failure the user can act on: shown as ``error: message`` and ``hint: hint``."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(NselfError):
    """Invalid project configuration; the message names the file and line when known."""


class UsageError(NselfError):
    """The command was called wrongly (exit code 2)."""

    exit_code = 2
