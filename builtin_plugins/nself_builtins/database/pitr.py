"""Point-in-time recovery: continuous WAL archiving plus base backups."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nself_sdk import NselfError, UsageError

if TYPE_CHECKING:
    from .target import Target


def archive_command(archive_dir: str) -> str:
    """The ``archive_command`` that copies a finished WAL segment into ``archive_dir``.

    A segment already in the archive is never overwritten: the same content is accepted
    (PostgreSQL may retry after a crash), different content fails the command, so the
    server keeps the segment and retries while it logs the failure. New segments are
    written to a temp name, fsynced, then renamed.
    """
    d = shlex.quote(archive_dir.rstrip("/"))
    return (
        f'test -f {d}/%f && {{ cmp -s "%p" {d}/%f; exit $?; }}; '
        f'cp "%p" {d}/%f.part && sync {d}/%f.part && mv {d}/%f.part {d}/%f'
    )


def parse_target(text: str) -> datetime:
    """``2026-05-01 14:30:00 UTC`` (or ISO 8601 with an offset) as an aware datetime."""
    raw = text.strip()
    cleaned = re.sub(r"\s*(UTC|Z)$", "+00:00", raw, flags=re.IGNORECASE)
    try:
        when = datetime.fromisoformat(cleaned)
    except ValueError:
        raise UsageError(
            f"cannot read the time {text!r}", 'use e.g. --target "2026-05-01 14:30:00 UTC"'
        ) from None
    if when.tzinfo is None:
        raise UsageError(
            f"the time {text!r} has no time zone", 'add one, e.g. "2026-05-01 14:30:00 UTC"'
        )
    return when.astimezone(UTC)


def pitr_for_target(target: Target) -> Any:
    raise NselfError(
        "point-in-time recovery of this database is not available yet",
        "it is coming; for now restore the newest backup with `nself db restore`",
    )
