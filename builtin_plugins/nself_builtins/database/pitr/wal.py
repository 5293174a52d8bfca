"""WAL and base backup files, read without a server: the archiver's command, LSN and
segment-name arithmetic, and what a base backup's tar says about itself."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import tarfile
from pathlib import Path
from typing import Any

from nself_sdk import NselfError

COMMIT = re.compile(
    r"lsn: ([0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: COMMIT "
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC"
)
END_POINT = re.compile(r"write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)")
SEGMENT = re.compile(r"^[0-9A-F]{24}$")


def archive_command(archive_dir: str) -> str:
    """The ``archive_command`` that copies a finished WAL segment into ``archive_dir``.

    A segment already in the archive is never overwritten: the same content is accepted
    (PostgreSQL may retry after a crash), different content fails the command, so the
    server keeps the segment and retries while it logs the failure. New segments are
    written to a temp name, fsynced, then renamed.
    """
    d = shlex.quote(archive_dir.rstrip("/"))
    return (
        f'mkdir -p {d} && {{ test ! -f {d}/%f || {{ cmp -s "%p" {d}/%f; exit; }}; }} && '
        f'cp "%p" {d}/%f.part && sync {d}/%f.part && mv {d}/%f.part {d}/%f'
    )


def lsn(text: str) -> int:
    """``0/3000028`` as a number."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def segment_start(name: str, size: int) -> int:
    """The first LSN of WAL segment ``name`` (segments of ``size`` bytes)."""
    return (int(name[8:16], 16) * 0x1_0000_0000) + int(name[16:24], 16) * size


START_WAL = re.compile(
    r"^START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)$", re.MULTILINE
)
START_TIMELINE = re.compile(r"^START TIMELINE: (\d+)$", re.MULTILINE)


def _label(text: str, name: str) -> dict[str, Any]:
    wal = START_WAL.search(text)
    if wal is None:
        raise NselfError(
            f"cannot read the start of base backup {name} (no backup_label in it)",
            "the file is missing or damaged; take a new base backup",
        )
    timeline = START_TIMELINE.search(text)
    return {
        "start_wal": wal.group(2),
        "start_lsn": wal.group(1),
        "timeline": int(timeline.group(1)) if timeline else int(wal.group(2)[:8], 16),
    }


def backup_label(base_tar: Path) -> dict[str, Any]:
    """The first WAL segment, LSN and timeline of a base backup, from its ``backup_label``.

    ``pg_basebackup`` sends ``backup_label`` as the first member of the tar, so this reads
    only the start of the file.
    """
    text = ""
    try:
        with tarfile.open(base_tar, mode="r|") as tar:  # a stream: stop at the member
            for member in tar:
                if member.name.lstrip("./") == "backup_label" and member.isfile():
                    handle = tar.extractfile(member)
                    text = handle.read().decode("utf-8", "replace") if handle else ""
                    break
    except (OSError, tarfile.TarError):
        text = ""
    return _label(text, base_tar.name)


class _Hashing:
    """A file read through sha256 (tarfile reads it as a stream)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.handle.read(size)
        self.digest.update(data)
        return data


def read_base(base_tar: Path) -> dict[str, Any]:
    """One pass over a base backup: its sha256, ``backup_label`` and the end LSN from its
    ``backup_manifest`` (``pg_basebackup`` puts both in the tar it writes to stdout)."""
    label = ""
    end = None
    with base_tar.open("rb") as raw:
        reader = _Hashing(raw)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    name = member.name.lstrip("./")
                    if name in ("backup_label", "backup_manifest") and member.isfile():
                        handle = tar.extractfile(member)
                        text = handle.read().decode("utf-8", "replace") if handle else ""
                        if name == "backup_label":
                            label = text
                        else:
                            end = _manifest_end(text)
        except tarfile.TarError:
            pass
        while reader.read(1 << 20):
            pass
    facts = _label(label, base_tar.name)
    facts.update(sha256=reader.digest.hexdigest(), end_lsn=end)
    return facts


def _manifest_end(text: str) -> str | None:
    try:
        ranges = json.loads(text).get("WAL-Ranges") or []
        return str(ranges[-1]["End-LSN"]) if ranges else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
