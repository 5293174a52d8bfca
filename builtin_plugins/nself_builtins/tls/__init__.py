"""TLS: the certificates nginx serves for every routed host, their status and renewal."""

from __future__ import annotations

from typing import Any

from nself_sdk import Config, Finding, Stack, hookimpl


@hookimpl
def register_commands(app: Any) -> None:
    from .cli import app as ssl_app

    app.add_typer(ssl_app, name="ssl", rich_help_panel="Run")


@hookimpl
def stack_started(config: Config, stack: Stack, runtime: Any, services: list[str]) -> None:
    """After nginx started: say so when the certificate it serves has expired, misses a
    routed host or expires within 30 days, so a failed renewal is not silent."""
    if "nginx" not in services:
        return
    from nself_sdk.console import warn

    from .checks import ssl_findings

    for finding in ssl_findings(config, stack):
        if finding.level != "ok":
            warn(f"certificate: {finding.message}", finding.hint)


@hookimpl
def diagnose(config: Config, stack: Stack, deep: bool, only: list[str]) -> list[Finding]:
    """``ssl``: the certificates nginx serves."""
    if only and "ssl" not in only:
        return []
    from .checks import ssl_findings

    return ssl_findings(config, stack)
