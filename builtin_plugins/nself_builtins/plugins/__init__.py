"""Plugin bundles: the loader for installed bundles and the `nself plugin` commands.

Bundles live in ``plugins/<name>/`` and are pinned in ``plugins.lock`` (see ``store``);
each becomes a plugin object (``bundle.BundlePlugin``) registered exactly like an
entry-point plugin. Python plugins installed with pip need nothing from here: the kernel
finds them through the ``nself.plugins`` entry-point group.

The installer API other plugins (the registry client) call::

    from nself_builtins.plugins import install_archive, install_folder, remove
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nself_sdk import Config, Problem, hookimpl

if TYPE_CHECKING:
    from typer import Typer

    from .store import Installed, LockEntry, install_archive, install_folder, remove

_loaded: dict[Path, list[Any]] = {}


# Checked before importing the installer: most projects have no bundles, and every
# `nself` command in a project calls these hooks (store.LOCK_FILE / store.PLUGINS_DIR).
_LOCK_FILE = "plugins.lock"
_PLUGINS_DIR = "plugins"


@hookimpl
def load_extra_plugins(project_dir: Path) -> list[object]:
    if not (project_dir / _LOCK_FILE).is_file():
        _loaded[project_dir.resolve()] = []
        return []
    from .bundle import bundle_plugins
    from .store import verified_bundles

    plugins = bundle_plugins(verified_bundles(project_dir))
    _loaded[project_dir.resolve()] = plugins
    return list(plugins)


def loaded_bundles(project_dir: Path) -> list[Any]:
    """The bundle plugins of the last manager built for ``project_dir``."""
    return list(_loaded.get(project_dir.resolve(), []))


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    if not (config.project_dir / _PLUGINS_DIR).is_dir() and not loaded_bundles(config.project_dir):
        return []
    from .store import LOCK_FILE, PLUGINS_DIR, unlisted_folders

    problems: list[Problem] = []
    owners: dict[int, str] = {}
    for plugin in loaded_bundles(config.project_dir):
        port = plugin.port(config)
        if port is None:
            continue
        if port in owners:
            problems.append(
                Problem(
                    "error",
                    f"plugins {owners[port]} and {plugin.nself_name} both use port {port}",
                    f"reinstall one of them to get a free port, or set "
                    f"{plugin.manifest.port_setting} to a free port in 3820-3849",
                )
            )
        owners[port] = plugin.nself_name
    for name in unlisted_folders(config.project_dir):
        problems.append(
            Problem(
                "warning",
                f"{PLUGINS_DIR}/{name} is not in {LOCK_FILE}, so it is not part of the stack",
                f"install it with `nself plugin install ./{PLUGINS_DIR}/{name}` or delete it",
            )
        )
    return problems


@hookimpl
def register_commands(app: Typer) -> None:
    from nself_sdk.commands import command_group

    from .cli import HELP, PANEL
    from .cli import app as commands

    command_group(app, "plugin", HELP, panel=PANEL).add_typer(commands)


def __getattr__(name: str) -> Any:
    # The installer is imported on first use: `nself` start-up never pays for it.
    if name in __all__:
        from . import store

        return getattr(store, name)
    raise AttributeError(name)


__all__ = ["Installed", "LockEntry", "install_archive", "install_folder", "remove"]
