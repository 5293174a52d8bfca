"""``nself service …``: custom services from 40+ templates, each in its own CS_N slot.

The slots themselves are rendered by the ``custom`` plugin; this one writes them. Typer
loads when the commands are registered; Jinja2 and the catalogue when one runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nself_sdk import GeneratedFile, hookimpl

if TYPE_CHECKING:
    from typer import Typer

README = """\
Code of the custom services: `nself service add NAME --template T` writes services/NAME/
from a template and gives it a CS_N slot in the env files.
"""


@hookimpl
def contribute_scaffold() -> list[GeneratedFile]:
    return [GeneratedFile("services/README", README)]


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import PANEL
    from .cli import app as commands

    app.add_typer(commands, rich_help_panel=PANEL)
