"""Target environments: ``nself env switch|status|show`` and the safety rule on the admin UI.

The kernel picks the target from ``--env`` > ``NSELF_ENV`` > ``.nself/env`` (written by
``nself env switch``) > dev; the layers it reads follow from the target. The work is done in
``commands.py``, imported only when an ``env`` command runs.
"""

from __future__ import annotations

from typing import Any

from nself_sdk import Config, Problem, hookimpl, safety_rule


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    """The admin UI is a local tool: refused in staging and prod (the safety table)."""
    if config.flag("ADMIN_ENABLED", False) and safety_rule(config.env, "admin") == "refuse":
        return [
            Problem(
                "error",
                f"{config.where('ADMIN_ENABLED')}: ADMIN_ENABLED=true is refused in "
                f"{config.env}: the admin UI is never deployed outside local",
                "set ADMIN_ENABLED=false in the staging/prod layer (or use it locally)",
            )
        ]
    return []


@hookimpl
def register_commands(app: Any) -> None:
    from .cli import register

    register(app)
