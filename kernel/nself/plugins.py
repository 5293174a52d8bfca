"""Builds the plugin manager: entry-point plugins first, then those a project adds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import NselfError

ENTRY_POINT_GROUP = "nself.plugins"
# Comma-separated plugin names to leave out, or to allow exclusively.
DISABLE_VAR = "NSELF_DISABLE_PLUGINS"
ONLY_VAR = "NSELF_PLUGINS"

_loaded: list[tuple[str, object]] | None = None


def _names(var: str) -> set[str]:
    return {n.strip() for n in os.environ.get(var, "").split(",") if n.strip()}


def installed_plugins() -> list[tuple[str, object]]:
    """Entry-point plugins, sorted by name so every build sees the same order."""
    global _loaded
    if _loaded is None:
        disabled, only = _names(DISABLE_VAR), _names(ONLY_VAR)
        found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        loaded = []
        for ep in found:
            if ep.name in disabled or (only and ep.name not in only):
                continue
            try:
                loaded.append((ep.name, ep.load()))
            except Exception as exc:  # a broken third-party plugin must not hide the rest
                raise NselfError(
                    f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}",
                    f"uninstall it or set {DISABLE_VAR}={ep.name}",
                ) from exc
        _loaded = loaded
    return _loaded


def make_manager(project_dir: Path | None = None) -> pluggy.PluginManager:
    """A manager with every installed plugin, plus the project's own when given."""
    pm = pluggy.PluginManager("nself")
    pm.add_hookspecs(hookspecs)
    for name, plugin in installed_plugins():
        pm.register(plugin, name=name)
    if project_dir is not None:
        disabled = _names(DISABLE_VAR)
        for extra in _flatten(pm.hook.load_extra_plugins(project_dir=project_dir)):
            name = getattr(extra, "nself_name", None) or type(extra).__name__
            if name in disabled:
                continue
            if pm.has_plugin(name):
                raise NselfError(
                    f"plugin name {name!r} is used twice", "remove one of the two plugins"
                )
            pm.register(extra, name=name)
    return pm


def _flatten(results: list[Any]) -> Iterator[Any]:
    for result in results:
        yield from result or ()


def call_each(pm: pluggy.PluginManager, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call ``hook`` on each plugin in registration order, keeping who answered what."""
    caller = getattr(pm.hook, hook)
    answers: list[tuple[str, Any]] = []
    for impl in reversed(caller.get_hookimpls()):
        result = impl.function(*[kwargs[arg] for arg in impl.argnames])
        if result is not None:
            answers.append((impl.plugin_name, result))
    return answers


def tier_of(plugin: object) -> str:
    """A plugin's licence tier: ``free`` unless it says otherwise."""
    return str(getattr(plugin, "nself_tier", None) or getattr(plugin, "NSELF_TIER", "free"))
