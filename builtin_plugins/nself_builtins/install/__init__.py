"""``nself install --domain D``: a fresh Debian or Ubuntu server made ready for nself, with a
project for D brought up on it (Docker Engine and Compose v2, the project, production
secrets, a firewall that Docker's published ports cannot bypass, the hardening suite,
the stack, certificates). Every step first looks whether it is done already, so a second
run changes nothing; ``--dry-run`` lists every step and changes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nself_sdk import hookimpl

if TYPE_CHECKING:
    from typer import Typer


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import app as install_app

    app.add_typer(install_app, name="install", rich_help_panel="Run")
