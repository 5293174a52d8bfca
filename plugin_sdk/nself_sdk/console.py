"""Output helpers for plugin commands: the same look as the core commands."""

from nself.console import emit_json, error, info, ok, paint, state, warn

__all__ = ["emit_json", "error", "info", "ok", "paint", "state", "warn"]
