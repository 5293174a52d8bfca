"""The registry as an nself plugin: ``nself registry …`` and registry settings.

Module level stays light: Typer, cryptography, httpx, starlette and uvicorn are imported
only when the commands are registered or run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nself_sdk import Setting, hookimpl

if TYPE_CHECKING:
    from typer import Typer


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting(
            "NSELF_REGISTRY_URL",
            None,
            "Plugin registry to install from (default: the public nself registry).",
        ),
        Setting(
            "NSELF_REGISTRY_KEYS",
            None,
            "Extra trusted registry keys, KEYID:BASE64,... (private registries): they sign "
            "the index.",
        ),
        Setting(
            "NSELF_PUBLISHER_KEYS",
            None,
            "Extra trusted publisher keys, KEYID:BASE64,...: they sign artifacts, never an index.",
        ),
        Setting(
            "NSELF_PING_API_URL",
            None,
            "Licence server (ping_api) asked about pro licences (default: the public one).",
        ),
    ]


@hookimpl
def register_commands(app: Typer) -> None:
    from nself_sdk.commands import command_group

    from .cli import plugin, registry

    app.add_typer(registry.app, rich_help_panel=registry.PANEL)
    command_group(app, "plugin").add_typer(plugin.app)
