"""What `nself plugin install SPEC` names: a bundle folder, an archive, or NAME[@VERSION]
from the registry (through the registry library's client, nself_registry.client)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nself_sdk import NselfError, UsageError

if TYPE_CHECKING:
    from .store import Approve

REGISTRY_NAME = re.compile(r"^([a-z][a-z0-9-]{0,38}[a-z0-9])(?:@(\S+))?$")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def _is_path(spec: str) -> bool:
    return (
        spec.startswith((".", "/", "~"))
        or "/" in spec
        or spec.endswith(ARCHIVE_SUFFIXES)
        or Path(spec).exists()
    )


def fetch_from_registry(project: Path, name: str, version: str | None) -> Path:
    """Download and verify ``name`` through the registry client; returns the archive."""
    from nself_registry.client import fetch

    return fetch(project, name, version)


def install_spec(project: Path, spec: str, force: bool, approve: Approve | None = None) -> Any:
    """Install what ``spec`` names; ``approve`` sees the checked bundle first."""
    from .store import install_archive, install_folder

    if _is_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise NselfError(
                f"{spec} does not exist", "give the path of a bundle folder or archive"
            )
        if path.is_dir():
            return install_folder(project, path, source="folder", replace=force, approve=approve)
        if not path.name.endswith(ARCHIVE_SUFFIXES):
            raise UsageError(f"{spec} is neither a folder nor a .tar.gz archive")
        return install_archive(project, path, replace=force, approve=approve)
    match = REGISTRY_NAME.match(spec)
    if not match:
        raise UsageError(
            f"{spec!r} is not a plugin name, folder or archive",
            "use NAME, NAME@VERSION, ./folder or file.tar.gz",
        )
    name, version = match.group(1), match.group(2)
    archive = fetch_from_registry(project, name, version)
    return install_archive(
        project,
        archive,
        source="registry",
        replace=force,
        expected_name=name,
        expected_version=version,
        approve=approve,
    )
