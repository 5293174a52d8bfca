"""``nself secrets generate|rotate|audit``: strong secrets in ``.env.secrets`` (mode 0600).

Values are never printed: commands name secrets, never show them. The work is done in
``commands.py``, imported only when a ``secrets`` command runs.
"""

from __future__ import annotations

from typing import Any

from nself_sdk import hookimpl


@hookimpl
def register_commands(app: Any) -> None:
    from .cli import register

    register(app)
