"""Durable, atomic file writes: temp file in the same folder, fsync, rename, fsync folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: readers see the old or the new file, never half.
    ``mode`` is the file's whatever the umask (and new folders are 0755, see below)."""
    make_folders(path.parent)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _name(exc, path)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    except OSError as exc:
        _name(exc, path)
        raise
    finally:
        os.close(dir_fd)


def make_folders(folder: Path, mode: int = 0o755) -> None:
    """Create ``folder`` and missing parents with ``mode`` (not umask-reduced): a host
    with umask 077 must not hide generated configuration from a container's user."""
    if folder.is_dir():
        return
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        try:
            created.mkdir()
        except FileExistsError:
            continue
        os.chmod(created, mode)


def _name(exc: BaseException, path: Path) -> None:
    """Name ``path`` in an OSError naming nothing (ENOSPC) or the temporary file."""
    temporary = str(path.parent / f".{path.name}.")
    if isinstance(exc, OSError) and (
        exc.filename in (None, "") or str(exc.filename).startswith(temporary)
    ):
        exc.filename = str(path)
