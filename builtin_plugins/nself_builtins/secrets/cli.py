"""``nself secrets generate|rotate|audit``: a module-level Typer app; the work is done by
``commands``."""

from __future__ import annotations

from typing import Annotated

import typer

PANEL = "Environments and secrets"
ENV_HELP = "local, staging or prod (default: the current target)."


app = typer.Typer(name="secrets", help="Generate, rotate and audit the project's secrets.")
app.callback(invoke_without_command=False, no_args_is_help=True)(lambda: None)


@app.command("generate")
def generate(
    env: Annotated[str | None, typer.Option("--env", help=ENV_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Fill missing secrets (and dev stubs outside local) into the target's secrets file.

    .env.secrets for local, .env.secrets.staging or .env.secrets.prod: no other target's
    file changes.

    Never overwrites a value already set.
    """
    from .commands import generate as run

    run(env, as_json)


@app.command("rotate")
def rotate(
    names: Annotated[
        list[str],
        typer.Argument(help="The secret(s) to replace, e.g. HASURA_JWT_KEY.", metavar="NAME..."),
    ],
    env: Annotated[str | None, typer.Option("--env", help=ENV_HELP)] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Accept the consequences without asking.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for each service.")
    ] = 180.0,
) -> None:
    """Regenerate NAME (one or more at once), restart the services that use it and check
    they come back healthy.

    The services restart in dependency order after a rebuild.
    """
    from .commands import rotate as run

    run(names, env, yes, timeout)


@app.command("audit")
def audit(
    env: Annotated[str | None, typer.Option("--env", help=ENV_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Flag weak, reused, dev-stub, missing or readable secrets (exit 1 on findings)."""
    from .commands import audit as run

    run(env, as_json)
