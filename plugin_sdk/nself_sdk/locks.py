"""One process at a time: an advisory lock file that a second process finds held.

Not part of the SDK's stable surface (``nself_sdk`` does not export it): it is what the
build's writer and nself's own plugins (the plugin store) share, and it may change with
them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nself.errors import NselfError


@contextmanager
def exclusive(path: Path, busy: str, hint: str) -> Iterator[None]:
    """``path`` (created 0600, its folder too) locked while the block runs; another
    process holding it already is not waited for: ``NselfError(busy, hint)`` at once.

    The lock is ``flock``'s, so it goes with the process: one killed mid-way leaves the file
    but not the lock."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NselfError(busy, hint) from None
        yield
    finally:
        os.close(fd)  # releases the lock
