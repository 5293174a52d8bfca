"""Running the stack: start, stop, restart, down, status, health, logs, urls, exec.

These commands work with whichever runtime a plugin provides (``provide_runtime``); the
builtin one is Docker. The commands (``cli``, a module-level Typer app) print; what they
do lives in ``project`` and ``report``. Heavy imports stay inside the commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nself_sdk import Config, Finding, hookimpl

if TYPE_CHECKING:
    from typer import Typer


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import app as commands

    app.add_typer(commands)


@hookimpl
def diagnose(config: Config, only: list[str]) -> list[Finding]:
    """Every service that should run is running and healthy (the engine's latest probes)."""
    if only and "services" not in only:
        return []
    from .checks import stack_findings

    return stack_findings(config)
