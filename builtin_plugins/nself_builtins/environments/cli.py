"""``nself env switch|status|show``: a module-level Typer app; the work is done by
``commands``."""

from __future__ import annotations

from typing import Annotated

import typer

PANEL = "Environments and secrets"
ENV_HELP = "local, staging or prod (default: the current target)."


app = typer.Typer(
    name="env", help="Switch, inspect and explain the target environment.", no_args_is_help=True
)


@app.command("switch")
def switch(
    target: Annotated[str, typer.Argument(help="local, staging or prod.")],
) -> None:
    """Make TARGET the environment every command works on (stored in .nself/env)."""
    from .commands import switch as run

    run(target)


@app.command("status")
def status(
    env: Annotated[str | None, typer.Option("--env", help=ENV_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Current target, the files that feed it, and what changed since the last build."""
    from .commands import status as run

    run(env, as_json)


@app.command("show")
def show(
    match: Annotated[
        str | None, typer.Argument(help="Only names containing this (e.g. POSTGRES).")
    ] = None,
    env: Annotated[str | None, typer.Option("--env", help=ENV_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    explain: Annotated[
        str | None,
        typer.Option("--explain", metavar="KEY", help="Which file set KEY, and what it beat."),
    ] = None,
) -> None:
    """The resolved configuration, every secret redacted."""
    from .commands import show as run

    run(env, as_json, explain, match)
