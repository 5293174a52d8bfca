"""``nself harden [--fix] [--layer L] [--env E] [--json]``: the Typer surface."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="The hardening suite: network, authentication, authorization, data, audit.",
    invoke_without_command=True,
    # One command, no subcommands: its usage line says so.
    subcommand_metavar="",
)


@app.callback()
def harden(
    fix: Annotated[
        bool, typer.Option("--fix", help="Apply the safe fixes, say what changed, check again.")
    ] = False,
    layer: Annotated[
        list[str] | None,
        typer.Option(
            "--layer",
            help="Only this layer (repeatable): network, authentication, "
            "authorization, data or audit.",
        ),
    ] = None,
    env: Annotated[str | None, typer.Option("--env", help="local, staging or prod.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Check the project, this machine (or the server) and the running stack against the
    hardening suite; exit 1 when a check fails.

    Outside dev every build runs the checks that need only the configuration: errors refuse
    the build, warnings print.
    """
    from .run import harden_command

    code = harden_command(env, fix, list(layer or []), as_json)
    if code:
        raise typer.Exit(code)
