"""A release: the project's files as the target environment needs them, in one archive.

The stack is the target's own build (``.nself/targets/ENV`` on a laptop), so deploying
never touches the files of the local build. Besides the generated files, a release holds
only what the stack reads from the project folder: the sources of its bind mounts and the
build contexts of its services (nginx overrides and certificates, plugin files, custom
services' sources).
Env layers, local state, backups, VCS data and the deploy key never leave the machine; the
server gets the resolved ``.env.computed`` only (mode 0600).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from nself_sdk import GeneratedFile, Stack

# Top-level entries that stay on this machine.
SKIP_TOP = {".git", ".hg", ".svn", ".nself", "backups", ".venv", "venv", ".ssh", ".aws"}
# Folder names skipped anywhere in the tree.
SKIP_ANY = {"node_modules", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
MANIFEST = ".nself/build.json"


@dataclass
class Release:
    id: str
    archive: bytes
    files: int
    size: int  # bytes before compression
    digest: str
    paths: list[str] = field(default_factory=list)


@dataclass
class Contents:
    files: dict[str, tuple[bytes, int]]  # path -> (content, mode)
    folders: set[str]  # folders the stack mounts, shipped even when empty
    skipped_links: list[str] = field(default_factory=list)


def _local_generated(project: Path) -> set[str]:
    try:
        data = json.loads((project / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    files = data.get("files", {}) if isinstance(data, dict) else {}
    return set(files) if isinstance(files, dict) else set()


def read_roots(stack: Stack) -> set[str]:
    """The project paths the stack reads: relative bind-mount sources and build contexts."""
    roots = set()
    for service in stack.services:
        sources = [m.source for m in service.mounts if "/" in m.source or m.source == "."]
        if service.build:
            sources.append(service.build)
        for source in sources:
            if source.startswith("/"):
                continue  # a host path on the server (e.g. the Docker socket)
            rel = posixpath.normpath(source)
            if rel != ".." and not rel.startswith("../"):
                roots.add(rel)
    return roots


def collect(
    project: Path,
    stack: Stack,
    generated: list[GeneratedFile],
    private: set[Path],
    built: Path | None = None,
) -> Contents:
    """Every file of the release; ``private`` files (the deploy key...) are never shipped.
    Files written once (a self-signed certificate) are read from the target's build in
    ``built`` when it has them."""
    built = built or project
    local_generated = _local_generated(project)
    private = {p.resolve() for p in private}
    out = Contents({}, set())

    def skipped(rel: Path) -> bool:
        parts = rel.parts
        if not parts:
            return False
        if parts[0] in SKIP_TOP or parts[0].startswith(".env"):
            return True
        return any(part in SKIP_ANY for part in parts)

    def add(path: Path) -> None:
        rel = path.relative_to(project)
        if skipped(rel) or rel.as_posix() in local_generated or path.resolve() in private:
            return
        if not path.exists():  # a link to nothing
            out.skipped_links.append(rel.as_posix())
            return
        out.files[rel.as_posix()] = (path.read_bytes(), path.stat().st_mode & 0o777)

    for root in sorted(read_roots(stack)):
        base = project / root
        if skipped(Path(root)):
            continue
        if base.is_file() or (base.is_symlink() and not base.is_dir()):
            add(base)
            continue
        out.folders.add(root)
        for folder, dirs, names in os.walk(base):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if not skipped((here / d).relative_to(project)))
            for name in sorted(names):
                add(here / name)
    for item in generated:
        target = built / item.path
        if item.keep_existing and target.is_file():
            out.files[item.path] = (target.read_bytes(), target.stat().st_mode & 0o777)
            continue
        content = item.content.encode("utf-8") if isinstance(item.content, str) else item.content
        out.files[item.path] = (content, item.mode)
    out.files = dict(sorted(out.files.items()))
    return out


def pack(contents: Contents, now: float | None = None) -> Release:
    """A gzip'd tar of the release and its id (UTC time and content digest).

    Folders are 0755 so that services running as other users (prometheus, grafana,
    postgres...) can read their bind mounts; files keep their modes (secrets 0600).
    """
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    folders = set(contents.folders)
    for path in contents.files:
        parent = posixpath.dirname(path)
        while parent:
            folders.add(parent)
            parent = posixpath.dirname(parent)
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for folder in sorted(folders):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for path, (content, mode) in contents.files.items():
            digest.update(path.encode() + b"\0" + content + b"\0")
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = mode
            info.mtime = 0  # deterministic: the digest names the content
            tar.addfile(info, io.BytesIO(content))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    hexdigest = digest.hexdigest()
    return Release(
        id=f"{stamp}-{hexdigest[:8]}",
        archive=buffer.getvalue(),
        files=len(contents.files),
        size=sum(len(c) for c, _m in contents.files.values()),
        digest=hexdigest,
        paths=list(contents.files),
    )
