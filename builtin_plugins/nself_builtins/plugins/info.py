"""What `nself plugin list/status/logs` show: installed bundles, Python plugins, health."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from nself_sdk import NselfError


def python_plugin_rows(show_all: bool) -> list[dict[str, Any]]:
    """Entry-point plugins; builtins (shipped with nself) only with ``show_all``."""
    from nself_sdk.host import entry_point_plugins

    rows = []
    for ep in sorted(entry_point_plugins(), key=lambda e: e.name):
        builtin = ep.dist.lower() == "nself"
        if builtin and not show_all:
            continue
        rows.append(
            {
                "name": ep.name,
                "version": ep.version or "?",
                "kind": "builtin" if builtin else "python",
                "tier": "free",
                "port": None,
                "source": ep.dist,
            }
        )
    return rows


def plugin_rows(project: Path | None, show_all: bool) -> list[dict[str, Any]]:
    from .store import read_lock

    rows: list[dict[str, Any]] = []
    if project is not None:
        for name, entry in sorted(read_lock(project).items()):
            rows.append(
                {
                    "name": name,
                    "version": entry.version,
                    "kind": "bundle",
                    "tier": entry.tier,
                    "port": entry.port,
                    "source": entry.source,
                    "sha256": entry.sha256,
                }
            )
    return rows + python_plugin_rows(show_all)


def status_rows(project: Path) -> list[dict[str, Any]]:
    """Each bundle: version, port, URL, missing required settings, container health."""
    from nself_sdk import load_config, public_urls, runtime, stack
    from nself_sdk.host import plugin_manager

    from . import loaded_bundles

    pm = plugin_manager(project)
    config = load_config(project)
    bundles = loaded_bundles(project)
    states: dict[str, str] = {}
    if bundles:
        try:
            for state in runtime(config, pm).status():
                states[state.name] = (
                    state.health
                    if state.running and state.health not in ("", "none")
                    else state.state
                )
        except NselfError as exc:
            states = {"*": f"unknown ({exc.message})"}
    urls: dict[str, str] = {}
    if bundles:
        try:
            urls = public_urls(config, stack(config, pm))
        except NselfError:  # a stack that does not build still has plugins to list
            urls = {}
    rows = []
    for plugin in bundles:
        m = plugin.manifest
        port = plugin.port(config)
        url = urls.get(plugin.host) if m.route is not None else None
        if m.service is None:
            health = "no service"
        else:
            health = states.get(plugin.host) or states.get("*") or "not running"
        rows.append(
            {
                "name": m.name,
                "version": m.version,
                "port": port,
                "url": url,
                "health": health,
                "missing": plugin.missing_settings(config),
            }
        )
    return rows


def show_logs(project: Path, name: str, follow: bool, tail: int) -> None:
    from nself_sdk import load_config, runtime
    from nself_sdk.host import plugin_manager

    from . import loaded_bundles

    pm = plugin_manager(project)
    bundles = {p.nself_name: p for p in loaded_bundles(project)}
    if name not in bundles:
        raise NselfError(
            f"plugin {name} is not installed in this project",
            "`nself plugin list` shows the installed plugins",
        )
    plugin = bundles[name]
    if plugin.manifest.service is None:
        raise NselfError(f"plugin {name} has no container, so it has no logs")
    rt = runtime(load_config(project), pm)
    printed = 0
    for line in rt.logs(plugin.host, follow=follow, tail=tail):
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
        sys.stdout.flush()
        printed += 1
    if not printed:
        from nself_builtins.shared.silence import no_logs_reason
        from nself_sdk.console import warn

        why = no_logs_reason(rt, plugin.host)
        if why is not None:
            warn(f"plugin {name} has no logs: {why}", f"nself start {plugin.host} says why too")
