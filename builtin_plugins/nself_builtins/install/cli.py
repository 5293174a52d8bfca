"""``nself install``: the Typer surface."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Prepare this Debian/Ubuntu server and bring a project for DOMAIN up on it.",
    invoke_without_command=True,
    subcommand_metavar="",
)


@app.callback()
def install(
    domain: Annotated[
        str, typer.Option("--domain", help="The domain the stack serves (api.DOMAIN, ...).")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Project name (default: DOMAIN's first label).")
    ] = None,
    path: Annotated[
        Path | None, typer.Option("--path", help="Project folder (default: /opt/nself/NAME).")
    ] = None,
    from_git: Annotated[
        str | None, typer.Option("--from-git", help="Clone the project from this git URL.")
    ] = None,
    restore: Annotated[
        Path | None,
        typer.Option("--restore", help="A backup (nself db backup) to restore once it runs."),
    ] = None,
    email: Annotated[
        str | None, typer.Option("--email", help="Contact address for the ACME account.")
    ] = None,
    env: Annotated[str, typer.Option("--env", help="prod or staging.")] = "prod",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List every step; change nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Take over a project nself install did not make here."),
    ] = False,
) -> None:
    """Check or install Docker Engine and Compose v2, create the project (or clone it),
    generate production secrets, keep published ports behind the firewall (DOCKER-USER),
    run the hardening suite, start the stack and obtain certificates.

    Each step is skipped when already done: a second run changes nothing.
    """
    from .steps import Options, run_install

    options = Options(
        domain=domain,
        name=name,
        path=path,
        from_git=from_git,
        restore=restore,
        email=email,
        env=env,
        dry_run=dry_run,
        force=force,
    )
    code = run_install(options)
    if code:
        raise typer.Exit(code)
