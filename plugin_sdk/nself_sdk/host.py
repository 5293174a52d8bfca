"""What nself's own plugins need from the kernel beyond the stable surface.

Not part of the SDK's stable surface: ``nself_sdk`` does not export it, the author's guide
does not show it, and it changes with the kernel. A third-party plugin that calls hooks
uses the manager its hook was given with the config (``config.pluginmanager``, as in
pytest), or ``nself_sdk.load_config(project).pluginmanager`` in a command.
"""

from __future__ import annotations

from pathlib import Path

from nself import build as _build
from nself import entrypoints
from nself.entrypoints import EntryPoint
from nself.errors import NselfError
from nself.plugins import ENTRY_POINT_GROUP, Manager, make_manager

from .envfiles import target_env
from .project import output_folder
from .writer import read_manifest, writing

# The files plugins answer to a hook (e.g. ``contribute_scaffold``), checked as the
# build's: inside the project, not an env file or .nself/, one owner per path.
collect_files = _build.collect_files


def entry_point_plugins() -> list[EntryPoint]:
    """The plugin entry points (``nself.plugins``) of the installed distributions, every
    one of them (the plugin switches do not leave any out)."""
    return entrypoints.scan(ENTRY_POINT_GROUP)


def plugin_manager(project: Path | None = None) -> Manager:
    """The plugin manager for ``project`` (its declarative plugins included), or of the
    installed plugins alone (``nself init``, ``nself version``: no project yet)."""
    return make_manager(project)


def build_root(project: Path, env: str | None = None) -> Path:
    """Where the build for ``env`` (default: the current target) writes its files: the
    project folder, or the target's own folder inside ``.nself/`` (hook ``build_folder``)."""
    return output_folder(make_manager(project), project, target_env(project, env))


def rollback(project: Path, env: str | None = None) -> dict[str, str]:
    """Undo the last build of ``env`` (default: the current target) through the plugin
    that keeps builds (``rollback_build``), with its folder locked as a build locks it:
    path -> restored | removed. The env files are not touched."""
    pm = make_manager(project)
    root = build_root(project, env)
    with writing(root, "restore"):
        manifest = read_manifest(root)
        done: dict[str, str] | None = pm.hook.rollback_build(project_dir=root, manifest=manifest)
    if done is None:
        raise NselfError(
            "no plugin keeps previous builds, so there is nothing to roll back",
            "check NSELF_DISABLE_PLUGINS and NSELF_PLUGINS (`nself version` lists the plugins)",
        )
    return done


__all__ = [
    "Manager",
    "build_root",
    "collect_files",
    "entry_point_plugins",
    "plugin_manager",
    "rollback",
]
