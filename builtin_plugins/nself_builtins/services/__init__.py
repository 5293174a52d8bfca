"""``nself service …``: custom services from 40+ templates, each in its own CS_N slot.

The slots themselves are rendered by the ``custom`` plugin; this one writes them. Typer
loads when the commands are registered; Jinja2 and the catalogue when one runs.
"""

from __future__ import annotations

from typing import Any

from nself_sdk import hookimpl


@hookimpl
def register_commands(app: Any) -> None:
    from .cli import register

    register(app)
