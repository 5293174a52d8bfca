"""Command groups several plugins add commands to (``nself plugin ...``, ``nself db ...``).

Any plugin's ``register_commands(app)`` may ask for a group; the first call creates it on
the root app, later calls get the same Typer app, whatever the order plugins load in::

    from nself_sdk.commands import command_group

    @hookimpl
    def register_commands(app):
        group = command_group(app, "plugin", "Install, inspect and author plugins.")

        @group.command()
        def search(term: str) -> None: ...
"""

from __future__ import annotations

from typing import Any

import typer


def command_group(app: Any, name: str, help: str = "", panel: str | None = None) -> typer.Typer:
    """The Typer sub-app ``nself NAME``, created on ``app`` the first time it is asked for."""
    groups: dict[str, typer.Typer] = app.__dict__.setdefault("_nself_command_groups", {})
    group = groups.get(name)
    if group is None:
        group = typer.Typer(name=name, help=help or None, no_args_is_help=True)
        app.add_typer(group, name=name, help=help or None, rich_help_panel=panel)
        groups[name] = group
    elif help or panel:
        # Whoever owns the group may come after a plugin that only adds to it.
        for info in app.registered_groups:
            if info.typer_instance is group:
                info.help = help or info.help
                info.rich_help_panel = panel or info.rich_help_panel
    return group


__all__ = ["command_group"]
