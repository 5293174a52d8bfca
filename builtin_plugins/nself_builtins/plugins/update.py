"""``nself plugin update``: installed registry plugins to their newest compatible version."""

from __future__ import annotations

from typing import Annotated

import typer


def update_command(
    names: Annotated[
        list[str] | None, typer.Argument(help="Plugins to update (default: all from a registry).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Only list what would be updated.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
) -> None:
    """Update installed registry plugins to their newest compatible version."""
    from nself_registry import client
    from nself_sdk import NselfError, find_project
    from nself_sdk.console import emit_json, info, ok

    from .store import install_archive, read_lock

    project = find_project()
    entries = read_lock(project)
    wanted = list(names or [])
    for name in wanted:
        if name not in entries:
            raise NselfError(f"plugin {name} is not installed", "see `nself plugin list`")
        if entries[name].source != "registry":
            raise NselfError(
                f"plugin {name} was installed from {entries[name].source or 'a folder'}, "
                "not from a registry",
                f"reinstall it from the registry: `nself plugin install {name} --force`",
            )
    chosen = [
        e for e in entries.values() if e.source == "registry" and (not wanted or e.name in wanted)
    ]
    results: list[dict[str, str]] = []
    if chosen:
        src = client.source(project)
        found = client.load_index(src)
    for entry in chosen:
        target = client.newest_compatible(found, entry.name)
        row = {"name": entry.name, "installed": entry.version, "available": "", "action": ""}
        if target is None:
            row["action"] = "not in the registry (or no compatible version)"
        elif not client.is_newer(target.version, entry.version):
            row["action"] = "up to date"
        elif check:
            row["available"], row["action"] = target.version, "update available"
        else:
            client.authorise(src, target)
            archive = client.download(src, target)
            install_archive(
                project,
                archive,
                source="registry",
                replace=True,
                expected_name=entry.name,
                expected_version=target.version,
                expected_sha256=target.sha256,
            )
            row["available"], row["action"] = target.version, "updated"
        results.append(row)
    if as_json:
        emit_json(results)
        return
    if not results:
        info("no plugins installed from a registry")
        return
    for row in results:
        if row["action"] == "updated":
            ok(f"updated {row['name']} {row['installed']} -> {row['available']}")
        elif row["action"] == "update available":
            info(f"{row['name']} {row['installed']} -> {row['available']} available")
        else:
            info(f"{row['name']} {row['installed']}: {row['action']}")
    if any(r["action"] == "updated" for r in results):
        info("next: nself build && nself start")
