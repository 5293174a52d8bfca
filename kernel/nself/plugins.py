"""The plugin manager: the entry points of group ``nself.plugins`` (builtin and third-party
alike), then those a project adds. ``NSELF_PLUGINS`` (allow-list) and
``NSELF_DISABLE_PLUGINS`` (deny-list) take comma-separated names. Group ``nself.essential``
(plugin = role) names the plugins nself cannot work without: each role keeps one of its
plugins, so a third-party one (another container runtime) may stand in for a builtin one.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import entrypoints, hookspecs
from .entrypoints import EntryPoint
from .errors import NselfError

ENTRY_POINT_GROUP = "nself.plugins"
ESSENTIAL_GROUP = "nself.essential"
DISABLE_VAR = "NSELF_DISABLE_PLUGINS"
ONLY_VAR = "NSELF_PLUGINS"


def _names(var: str) -> set[str]:
    return {n.strip() for n in os.environ.get(var, "").split(",") if n.strip()}


def switches_set() -> str:
    """The plugin switches in force (``NSELF_DISABLE_PLUGINS=a,b``), for hints; or ``""``."""
    return " ".join(f"{var}={os.environ[var]}" for var in (DISABLE_VAR, ONLY_VAR) if _names(var))


def _keeps(name: str) -> bool:
    only = _names(ONLY_VAR)
    return name not in _names(DISABLE_VAR) and (not only or name in only)


def forget() -> None:
    """Scan again on next use (after installing a distribution into this process)."""
    _installed.cache_clear()
    _base_manager.cache_clear()


def _switches() -> tuple[str, str, tuple[str, ...]]:
    return os.environ.get(DISABLE_VAR, ""), os.environ.get(ONLY_VAR, ""), tuple(sys.path)


def installed_plugins() -> list[tuple[str, object]]:
    """``(name, plugin)`` of the entry-point plugins the switches leave in, sorted by name;
    scanned once per process (again when the switches or ``sys.path`` change)."""
    return _installed(*_switches())


@cache
def _installed(*switches: object) -> list[tuple[str, object]]:
    found = entrypoints.scan(ENTRY_POINT_GROUP, ESSENTIAL_GROUP)
    wanted = [ep for ep in found if ep.group == ENTRY_POINT_GROUP and _keeps(ep.name)]
    _check_essential(found, {ep.name for ep in wanted})
    loaded: list[tuple[str, object]] = []
    owners: dict[str, EntryPoint] = {}
    for ep in sorted(wanted, key=lambda ep: (ep.name, ep.dist)):
        if ep.name in owners:
            first = owners[ep.name]
            raise NselfError(
                f"plugin name {ep.name!r} is registered by both {first.dist} ({first.value}) "
                f"and {ep.dist} ({ep.value})",
                f"uninstall one of the two distributions, or set {DISABLE_VAR}={ep.name}",
            )
        owners[ep.name] = ep
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must not hide the rest
            raise NselfError(
                f"plugin {ep.name!r} ({ep.value}, from {ep.dist}) failed to load: "
                f"{type(exc).__name__}: {exc}",
                f"uninstall it or set {DISABLE_VAR}={ep.name}",
            ) from exc
        loaded.append((ep.name, plugin))
    return loaded


def _check_essential(found: list[EntryPoint], enabled: set[str]) -> None:
    """Every role of ``nself.essential`` keeps one of its installed plugins enabled."""
    plugins = {ep.name for ep in found if ep.group == ENTRY_POINT_GROUP}
    roles: dict[str, list[str]] = {}
    for ep in found:
        if ep.group == ESSENTIAL_GROUP and ep.name in plugins:
            roles.setdefault(ep.value, []).append(ep.name)
    missing = sorted(
        " or ".join(sorted(names)) for names in roles.values() if enabled.isdisjoint(names)
    )
    if not missing:
        return
    every = sorted(n for names in roles.values() for n in names)
    left_out = ", ".join(missing)
    if _names(DISABLE_VAR).intersection(every):
        fix = f"remove {left_out} from {DISABLE_VAR}"
    else:
        fix = f"add {left_out} to {ONLY_VAR}"
    fix += f" (the essential plugins: {', '.join(every)})"
    unknown = sorted((_names(DISABLE_VAR) | _names(ONLY_VAR)) - plugins)
    if unknown:  # "compose docker_runtime" is one name, and no plugin's
        fix += f"; no plugin is named {', '.join(map(repr, unknown))}: separate names by commas"
    what = f"plugin {left_out} is" if len(missing) == 1 else f"plugins {left_out} are"
    raise NselfError(
        f"{what} essential: nself does not work without {'it' if len(missing) == 1 else 'them'}",
        fix,
    )


class Manager(pluggy.PluginManager):
    """pluggy's manager, saying who answered what and quicker to register plugins with.

    Every hook is called through pluggy, so wrappers and monitoring see every call;
    ``answers(NAME, ...)`` makes that one call and names the plugin behind each answer.
    Only names carrying the ``@hookimpl`` marker reach pluggy's ``getattr_static`` reads.
    """

    def __init__(self) -> None:
        super().__init__("nself")
        self._calls: list[list[tuple[str, object]]] = []  # open answers() calls

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        for caller in self.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    impl.function = self._noting(impl.plugin_name, impl.function)  # type: ignore[misc]
        return registered

    def _noting(self, plugin: str, function: Any) -> Any:
        """``function`` (run by pluggy's own loop), noting its answer for ``answers``."""

        def answer(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            if self._calls and result is not None:
                self._calls[-1].append((plugin, result))
            return result

        return answer

    def answers(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """``(plugin, answer)`` of one pluggy call of ``hook``, in pluggy's order; an answer a
        hook wrapper put in is attributed to the wrapper."""
        self._calls.append([])
        try:
            results = getattr(self.hook, hook)(**kwargs)
        finally:
            noted = self._calls.pop()
        # Matched by identity, each noted answer once: two plugins may hand over one object.
        named: list[tuple[str, Any]] = []
        for result in results:
            at = next((i for i, (_p, answer) in enumerate(noted) if answer is result), None)
            named.append((noted.pop(at)[0] if at is not None else "", result))
        if any(not plugin for plugin, _r in named):
            impls = getattr(self.hook, hook).get_hookimpls()
            wrappers = " and ".join(i.plugin_name for i in impls if i.wrapper or i.hookwrapper)
            named = [(plugin or wrappers or "?", r) for plugin, r in named]
        return named

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        marker = f"{self.project_name}_impl"
        if isinstance(plugin, ModuleType):
            if not hasattr(vars(plugin).get(name), marker):
                return None
            return super().parse_hookimpl_opts(plugin, name)
        # A plugin object: its class's marked methods, or a function set on the object.
        opts = _marked(type(plugin), marker).get(name)
        if opts is not None:
            return opts
        own = vars(plugin) if type(plugin).__dictoffset__ else {}
        if not hasattr(own.get(name), marker):
            return None
        return super().parse_hookimpl_opts(plugin, name)


_MARKED: dict[type, dict[str, Any]] = {}


def _marked(cls: type, marker: str) -> dict[str, Any]:
    """The hookimpl options of ``cls``'s marked methods, by name (read once per class)."""
    found = _MARKED.get(cls)
    if found is None:
        found = _MARKED[cls] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                opts = getattr(value, marker, None)
                if isinstance(opts, dict):
                    found[name] = opts
                else:  # a subclass may override a hook with a plain method
                    found.pop(name, None)
    return found


def _manager(plugins: list[tuple[str, object]]) -> Manager:
    """A manager of ``plugins``, each checked against the hook specifications."""
    pm = Manager()
    pm.add_hookspecs(hookspecs)
    try:
        for name, plugin in plugins:
            pm.register(plugin, name=name)
        pm.check_pending()  # implementations of hooks that do not exist (typos)
    except pluggy.PluginValidationError as exc:
        name = next((n for n, p in plugins if p is exc.plugin), "?")
        why = str(exc).splitlines()[-1].split(" in plugin ")[0]  # pluggy's own reason
        raise NselfError(
            f"plugin {name!r} does not fit nself's hooks: {why}",
            f"see docs/hooks.md for the hooks and their arguments, or set {DISABLE_VAR}={name}",
        ) from None
    return pm


@cache
def _base_manager(*switches: object) -> Manager:
    return _manager(installed_plugins())


def make_manager(project_dir: Path | None = None) -> Manager:
    """A manager with every installed plugin (built once per process and shared: register
    nothing into it), plus the project's own (``load_extra_plugins``) when given."""
    base = _base_manager(*_switches())
    if project_dir is None:
        return base
    extras = [
        (getattr(extra, "nself_name", None) or type(extra).__name__, extra)
        for answer in base.hook.load_extra_plugins(project_dir=project_dir)
        for extra in answer or ()
    ]
    extras = [(name, extra) for name, extra in extras if _keeps(name)]
    if not extras:
        return base
    plugins = installed_plugins()
    taken = {name for name, _plugin in plugins}
    for name, _extra in extras:
        if name in taken:
            raise NselfError(
                f"plugin name {name!r} is used by two plugins (one is from {project_dir})",
                "rename or remove one of the two plugins",
            )
        taken.add(name)
    return _manager(plugins + extras)
