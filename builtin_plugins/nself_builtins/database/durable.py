"""Files a backup or a base backup writes, written durably: a temp file beside its final
name, locked while it is written (so the next run knows a dead run's from a live one's),
fsynced and renamed; the sha256 recorded for each. Shared by ``backups``, ``pitr``,
``offsite`` and ``retention``, below all of them."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Say = Callable[[str], None]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TEMP_PREFIX = ".nself-"
LEFTOVER_GRACE = 2.0  # seconds: an unlocked temp file this old is a dead run's (locked at once)
SCHEDULER_LEFTOVER_AGE = 86400.0  # the in-stack scheduler's temp files (it cleans its own)


@contextmanager
def temp_in(folder: Path, name: str) -> Iterator[tuple[Path, Any]]:
    """A temp file beside ``name``, locked (flock) while this process writes it: the next
    run deletes temp files nobody holds (a killed or disk-full run's), see ``leftovers``."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{TEMP_PREFIX}{name}.", suffix=".part")
    os.fchmod(fd, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    handle = os.fdopen(fd, "wb")
    try:
        yield Path(tmp), handle
    except BaseException:
        handle.close()
        Path(tmp).unlink(missing_ok=True)
        raise


def held(path: Path) -> bool:
    """Whether a live process holds the temp file's lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def leftovers(folder: Path, now: float | None = None) -> list[Path]:
    """Temp files of runs that died (killed, disk full) in a backup folder.

    nself's own (``.nself-*.part``) count once nobody holds their lock; the in-stack
    scheduler's (``.backup-*.part``, ``.facts``) once they are a day old (it removes its own
    when it starts again)."""
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    found = []
    for path in folder.iterdir():
        name = path.name
        if not name.startswith(".") or not path.is_file() or path.is_symlink():
            continue
        age = now - path.stat().st_mtime
        if name.startswith(TEMP_PREFIX) and name.endswith(".part"):
            if age > LEFTOVER_GRACE and not held(path):
                found.append(path)
        elif (
            name.startswith((".backup-", ".base-"))
            and name.endswith((".part", ".facts", ".facts.json", ".failed"))
            and age > SCHEDULER_LEFTOVER_AGE
        ):
            found.append(path)
    return sorted(found)


def clean_leftovers(folder: Path, say: Say = lambda _: None) -> list[str]:
    removed = []
    for path in leftovers(folder):
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        removed.append(path.name)
        say(f"removed {path.name} ({size} bytes), left by an interrupted run")
    return removed


def finish(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def write_json(path: Path, data: dict[str, Any]) -> None:
    with temp_in(path.parent, path.name) as (tmp, handle):
        handle.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        finish(handle)
        os.replace(tmp, path)
    fsync_dir(path.parent)
