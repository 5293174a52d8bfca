"""``nself doctor``: every plugin's checks (``diagnose`` hook) in one report.

The doctor itself checks only the configuration (valid, generated files current); the
engine, services, certificates, migrations, backups and secrets are checked by the plugins
that own them, so a third-party plugin joins the report by implementing ``diagnose``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nself_sdk import hookimpl

if TYPE_CHECKING:
    from typer import Typer


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import app as commands

    app.add_typer(commands)
