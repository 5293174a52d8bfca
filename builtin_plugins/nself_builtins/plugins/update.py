"""``nself plugin update``: installed registry plugins to their newest compatible version."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nself_sdk import NselfError

if TYPE_CHECKING:
    from .store import Approve


def update_plugins(
    project: Path, wanted: list[str], check: bool, approve: Approve | None = None
) -> list[dict[str, str]]:
    """Update the plugins installed from a registry (``wanted``, or all of them) to their
    newest compatible version (``check``: only find it); one row per plugin with its
    ``action``."""
    from nself_registry import client

    from .store import install_archive, read_lock

    entries = read_lock(project)
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
                approve=approve,
            )
            row["available"], row["action"] = target.version, "updated"
        results.append(row)
    return results
