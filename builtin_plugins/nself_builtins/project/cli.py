"""``nself init``, ``nself build`` and ``nself version``: top-level commands (the Project
panel), added to the root without a group name. The logic lives in ``wizard``/``scaffold``
and ``build``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PANEL = "Project"

app = typer.Typer()


@app.command(rich_help_panel=PANEL)
def init(
    folder: Annotated[Path, typer.Argument(help="Where to create the project.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Project name (default: folder).")] = None,
    domain: Annotated[
        str | None,
        typer.Option(help="Base domain (default: local.nself.org; --force keeps the project's)."),
    ] = None,
    wizard: Annotated[
        bool, typer.Option("--wizard", help="Ask for name, domain and services.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Rewrite an existing project's committed env files, keeping their "
            "values (name, domain, dev secrets, edits) unless given; copies of the "
            "previous files go to .nself/init-backups.",
        ),
    ] = False,
) -> None:
    """Create a project: env layers with fresh dev secrets, folders, .gitignore."""
    from .wizard import run_init

    run_init(folder, name, domain, wizard, force)


@app.command(rich_help_panel=PANEL)
def build(
    check: Annotated[
        bool,
        typer.Option("--check", help="Validate and compare only; fail if out of date."),
    ] = False,
    env: Annotated[str | None, typer.Option("--env", help="local, staging or prod.")] = None,
    rollback: Annotated[
        bool,
        typer.Option("--rollback", help="Restore the files of the previous build (of --env)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Generate docker-compose.yml, nginx config and .env.computed from the env files."""
    from .build import run_build

    run_build(check=check, env=env, undo=rollback, as_json=as_json)


@app.command(rich_help_panel=PANEL)
def version(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Show the nself version and the plugins it loaded."""
    import sys

    from nself_sdk import nself_version
    from nself_sdk.console import emit_json, info
    from nself_sdk.host import entry_point_plugins, plugin_manager

    loaded = plugin_manager()
    plugins = [
        {"name": ep.name, "distribution": ep.dist, "version": ep.version}
        for ep in sorted(entry_point_plugins(), key=lambda ep: ep.name)
        if loaded.has_plugin(ep.name)
    ]
    python = sys.version.split()[0]
    if as_json:
        emit_json({"version": nself_version, "python": python, "plugins": plugins})
        return
    info(f"nself {nself_version} (Python {python})")
    info(f"plugins ({len(plugins)}):")
    for p in plugins:
        info(f"  {p['name']:<16} {p['distribution']} {p['version']}")
