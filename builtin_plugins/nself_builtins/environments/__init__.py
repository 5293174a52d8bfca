"""Target environments: ``nself env switch|status|show`` and the safety rule on the admin UI.

The kernel picks the target from ``--env`` > ``NSELF_ENV`` > ``.nself/env`` (written by
``nself env switch``) > dev; the layers it reads follow from the target. The work is done in
``commands.py``, imported only when an ``env`` command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nself_sdk import Config, Problem, hookimpl, safety_rule
from nself_sdk.envfiles import SECRETS_FILES

if TYPE_CHECKING:
    from typer import Typer

# The files a project's settings come from (defaults and derived values aside).
ENV_LAYERS = (".env.dev", ".env.local", ".env.staging", ".env.prod", *SECRETS_FILES)
ENV_FILES = frozenset(ENV_LAYERS)


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    """The admin UI is a local tool: refused in staging and prod (the safety table).
    Names no plugin reads but one nearly does (a typo) are warned about."""
    if config.flag("ADMIN_ENABLED", False) and safety_rule(config.env, "admin") == "refuse":
        return [
            Problem(
                "error",
                f"{config.where('ADMIN_ENABLED')}: ADMIN_ENABLED=true is refused in "
                f"{config.env}: the admin UI is never deployed outside local",
                "set ADMIN_ENABLED=false in the staging/prod layer (or use it locally)",
            )
        ]
    return unknown_settings(config)


def unknown_settings(config: Config) -> list[Problem]:
    """Warnings for names set in an env file that no plugin declares or derives and that
    look like a mistake; the common case (every name known) costs one set lookup each."""
    declared, derived, history = config.declared, config.derived, config.resolver.history
    unknown = [
        name
        for name, chain in history.items()
        if name not in declared and name not in derived and chain[-1].file in ENV_FILES
    ]
    if not unknown:
        return []
    from .names import unknown_setting_warnings

    order = {name: i for i, name in enumerate(ENV_LAYERS)}
    unknown.sort(key=lambda n: (order.get(history[n][-1].file, 9), history[n][-1].line))
    return unknown_setting_warnings(config, unknown)


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import PANEL
    from .cli import app as commands

    app.add_typer(commands, rich_help_panel=PANEL)


@hookimpl
def build_folder(project_dir: Path, env: str) -> str | None:
    """A server's build on a laptop goes to ``.nself/targets/ENV``: building for staging
    or prod never rewrites the local stack's files (nor its dev certificate)."""
    from nself_builtins.shared.placement import build_folder as folder

    return folder(project_dir, env)
