"""A release: the project's files as the target environment needs them, in one archive.

The stack is generated for the target in memory (``plan``), so deploying never touches the
files of the local build. Around the generated files go the files the stack reads from the
project folder (nginx overrides, certificates, migrations, custom services' sources,
plugin files); the env layers, local state, backups and VCS data never leave the machine:
the server gets the resolved ``.env.computed`` only (mode 0600).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from nself_sdk import GeneratedFile, write_atomic

# Top-level entries that stay on this machine.
SKIP_TOP = {".git", ".hg", ".svn", ".nself", "backups", ".venv", "venv"}
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


def _skipped(rel: Path, generated_locally: set[str]) -> bool:
    parts = rel.parts
    if parts[0] in SKIP_TOP or parts[0].startswith(".env"):
        return True
    if any(part in SKIP_ANY for part in parts):
        return True
    # Left from the local build and not part of the target's stack (e.g. a service on
    # locally only): the plan decides what is generated.
    return rel.as_posix() in generated_locally


def _local_generated(project: Path) -> set[str]:
    try:
        data = json.loads((project / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    files = data.get("files", {}) if isinstance(data, dict) else {}
    return set(files) if isinstance(files, dict) else set()


def collect(project: Path, generated: list[GeneratedFile]) -> dict[str, tuple[bytes, int]]:
    """Every file of the release: path -> (content, mode)."""
    local_generated = _local_generated(project)
    files: dict[str, tuple[bytes, int]] = {}
    for folder, dirs, names in os.walk(project):
        base = Path(folder)
        dirs[:] = sorted(d for d in dirs if not _skipped((base / d).relative_to(project), set()))
        for name in names:
            path = base / name
            rel = path.relative_to(project)
            if path.is_symlink() or not path.is_file() or _skipped(rel, local_generated):
                continue
            files[rel.as_posix()] = (path.read_bytes(), path.stat().st_mode & 0o777)
    for item in generated:
        if item.keep_existing and (project / item.path).is_file():
            target = project / item.path
            files[item.path] = (target.read_bytes(), target.stat().st_mode & 0o777)
            continue
        if item.keep_existing:
            # Written once, as `nself build` would, so later releases keep the same file.
            write_atomic(project / item.path, item.content, item.mode)
        content = item.content.encode("utf-8") if isinstance(item.content, str) else item.content
        files[item.path] = (content, item.mode)
    return dict(sorted(files.items()))


def pack(files: dict[str, tuple[bytes, int]], now: float | None = None) -> Release:
    """A gzip'd tar of ``files`` and the release id (UTC time and content digest)."""
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path, (content, mode) in files.items():
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
        files=len(files),
        size=sum(len(c) for c, _m in files.values()),
        digest=hexdigest,
    )
