"""Retention of point-in-time recovery: which base backups and WAL files may go.

The rule (``PITR_RETENTION_DAYS``, the recovery window to keep):

* keep every base backup that ended inside the window,
* keep the newest base backup that ended before the window starts (recovering to a point
  early in the window starts from it), so the newest base backup is always kept,
* delete the older ones,
* delete archived WAL only below the first segment the oldest kept base backup needs,
  comparing names as ``pg_archivecleanup`` does (log and segment number, whatever the
  timeline): segments, ``.partial`` segments and ``.backup`` history files below it go;
  timeline ``.history`` files always stay (they are tiny and recovery reads them).

Deleting goes base backups first (oldest first, manifest before tar, so an interrupted run
never leaves a listed backup without its file) and WAL last, and only after checking again
that no listed base backup needs any of it: an interruption can leave extra files behind,
never a kept backup without its WAL.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nself_sdk import NselfError, UsageError

if TYPE_CHECKING:
    from .pitr import Pitr

SETTING = "PITR_RETENTION_DAYS"
DEFAULT_DAYS = 7
# what pg_archivecleanup removes: WAL segments, partial segments, backup history files
WAL_FILE = re.compile(r"^[0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?$")
LEFTOVER_AGE = 86400.0  # an unlisted base backup file older than this is a leftover


def check_days(days: int, source: str) -> int:
    if days < 1:
        raise UsageError(
            f"{source} must be at least 1 day, not {days}",
            f"the recovery window to keep, in days (default {DEFAULT_DAYS})",
        )
    return days


def wal_position(name: str) -> str:
    """The log and segment number of a WAL file name (pg_archivecleanup compares these)."""
    return name[8:24]


@dataclass
class PrunePlan:
    days: int
    now: datetime
    window_start: datetime
    keep: list[tuple[dict[str, Any], str]]
    drop: list[dict[str, Any]]
    leftovers: list[str]
    cutoff: str
    wal: list[str]
    wal_bytes: int
    base_bytes: int
    folders: dict[str, int] = field(default_factory=dict)  # data folders kept by recoveries
    applied: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return self.wal_bytes + self.base_bytes + sum(self.folders.values())

    @property
    def earliest_after(self) -> str:
        return str(self.keep[0][0]["end"]) if self.keep else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": not self.applied,
            "retention_days": self.days,
            "window_start": self.window_start.isoformat(),
            "delete": {
                "base_backups": [b["name"] for b in self.drop],
                "leftover_files": self.leftovers,
                "kept_data_folders": self.folders,
                "wal": {
                    "count": len(self.wal),
                    "first": self.wal[0] if self.wal else None,
                    "last": self.wal[-1] if self.wal else None,
                    "bytes": self.wal_bytes,
                },
                "bytes": self.freed,
            },
            "keep": {
                "base_backups": [{"name": b["name"], "why": why} for b, why in self.keep],
                "wal_from": self.cutoff,
            },
            "earliest_recoverable": self.earliest_after,
        }

    def describe(self) -> list[str]:
        verb = "deleted" if self.applied else "would delete"
        lines = [
            f"retention: {self.days} day(s) (window from {self.window_start:%Y-%m-%d %H:%M} UTC)"
        ]
        for base in self.drop:
            lines.append(f"  {verb} base backup {base['name']} (ended {when_text(base['end'])})")
        for name in self.leftovers:
            lines.append(f"  {verb} leftover {name} (no manifest)")
        for name, size in self.folders.items():
            lines.append(
                f"  {verb} {name} ({size_text(size)}), the data folder a recovery replaced"
            )
        if self.wal:
            lines.append(
                f"  {verb} {len(self.wal)} WAL file(s) {self.wal[0]} .. {self.wal[-1]}"
                f" ({size_text(self.wal_bytes)})"
            )
        else:
            lines.append(f"  no WAL to delete (every archived segment from {self.cutoff} is kept)")
        for base, why in self.keep:
            lines.append(f"  keep base backup {base['name']}: {why}")
        lines.append(
            f"  {'freed' if self.applied else 'frees'} {size_text(self.freed)};"
            f" earliest recoverable point afterwards: {when_text(self.earliest_after)}"
        )
        return lines + self.notes


def when_text(iso: object) -> str:
    return str(iso)[:19].replace("T", " ") + " UTC"


def size_text(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _ended(base: dict[str, Any]) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(base["end"]))
    except (KeyError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def start_wal(engine: Pitr, base: dict[str, Any]) -> str:
    """The first WAL segment a base backup needs (manifest, else its backup_label)."""
    from .pitr import backup_label

    recorded = str(base.get("start_wal") or "")
    if re.fullmatch(r"[0-9A-F]{24}", recorded):
        return recorded
    try:
        return str(backup_label(engine.base_dir / str(base["name"]))["start_wal"])
    except NselfError as exc:
        raise NselfError(
            f"cannot tell which WAL base backup {base['name']} needs ({exc.message});"
            " nothing was deleted",
            "move the damaged base backup (and its .json) out of the backup folder, or take"
            " a new base backup",
        ) from None


def _folder_time(name: str) -> datetime:
    """When a recovery moved a data folder aside (``pgdata.pre-pitr-<UTC time>``); a failed
    recovery's folder (``.failed-pitr``) counts as old: nothing in it is ever needed."""
    match = re.search(r"\.pre-pitr-(\d{14})$", name)
    if match is None:
        return datetime.min.replace(tzinfo=UTC)
    return datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _leftovers(folder: Path, listed: set[str], now: float) -> list[str]:
    """Base backup files without a manifest (an interrupted backup or prune), a day old."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        name = path.name
        orphan = name.startswith("base-") and name.endswith(".tar") and name not in listed
        partial = name.startswith(".base-") and name.endswith(".part")
        if (orphan or partial) and path.is_file() and now - path.stat().st_mtime > LEFTOVER_AGE:
            found.append(name)
    from .durable import TEMP_PREFIX, leftovers

    found += [p.name for p in leftovers(folder) if p.name.startswith(TEMP_PREFIX)]
    return sorted(set(found))


def plan_prune(engine: Pitr, days: int, now: datetime | None = None) -> PrunePlan:
    """What ``days`` of retention would delete; changes nothing."""
    check_days(days, "the retention")
    now = now or datetime.now(UTC)
    bases = engine.base_backups()  # oldest end first
    if not bases:
        raise NselfError(
            "there is no base backup, so there is nothing to keep WAL for; nothing was deleted",
            "take one with `nself db pitr backup` (pruning keeps every point after it)",
        )
    files = engine.archive.files()  # an error when the archive folder is missing
    try:
        window_start = now - timedelta(days=days)
    except OverflowError:  # a window longer than the calendar: keep everything
        window_start = datetime.min.replace(tzinfo=UTC)
    keep: list[tuple[dict[str, Any], str]] = []
    before: list[dict[str, Any]] = []
    for base in bases:
        ended = _ended(base)
        if ended is None:
            keep.append((base, "its end time cannot be read"))
        elif ended >= window_start:
            keep.append((base, "ended inside the window"))
        else:
            before.append(base)
    if before:
        keep.append((before[-1], "newest base backup that ended before the window starts"))
        keep.sort(key=lambda pair: str(pair[0].get("end", "")))
    drop = before[:-1]
    cutoff = min((start_wal(engine, b) for b, _ in keep), key=wal_position)
    wal = sorted(
        (n for n in files if WAL_FILE.match(n) and wal_position(n) < wal_position(cutoff)),
        key=lambda n: (wal_position(n), n),
    )
    base_bytes = 0
    for base in drop:
        for path in (engine.base_dir / base["name"], engine.base_dir / f"{base['name']}.json"):
            base_bytes += path.stat().st_size if path.is_file() else 0
    leftovers = _leftovers(engine.base_dir, {b["name"] for b in bases}, time.time())
    base_bytes += sum((engine.base_dir / n).stat().st_size for n in leftovers)
    kept = engine.control.kept_folders() if engine.control is not None else {}
    folders = {name: size for name, size in kept.items() if _folder_time(name) < window_start}
    return PrunePlan(
        days=days,
        now=now,
        window_start=window_start,
        keep=keep,
        drop=drop,
        leftovers=leftovers,
        cutoff=cutoff,
        wal=wal,
        wal_bytes=sum(files[n] for n in wal),
        base_bytes=base_bytes,
        folders=folders,
    )


def apply_prune(engine: Pitr, plan: PrunePlan) -> PrunePlan:
    """Delete what ``plan`` lists: base backups (manifest first), then WAL."""
    from .durable import fsync_dir

    folder = engine.base_dir
    for base in plan.drop:  # oldest first
        (folder / f"{base['name']}.json").unlink(missing_ok=True)
        fsync_dir(folder)  # the backup is no longer listed before its file goes
        (folder / base["name"]).unlink(missing_ok=True)
    for name in plan.leftovers:
        (folder / name).unlink(missing_ok=True)
    if plan.drop or plan.leftovers:
        fsync_dir(folder)
    # check again right before the WAL goes: every listed base backup starts at or after
    # the cutoff (a backup copied back meanwhile keeps its WAL)
    for base in engine.base_backups():
        if wal_position(start_wal(engine, base)) < wal_position(plan.cutoff):
            raise NselfError(
                f"base backup {base['name']} needs WAL below {plan.cutoff}; no WAL was deleted",
                "run `nself db pitr prune` again to see the current plan",
            )
    engine.archive.remove(plan.wal)
    if plan.folders:
        engine.control.remove_kept(list(plan.folders))
    plan.applied = True
    return plan


def configured_days(config: Any) -> int:
    days: int = config.int(SETTING, DEFAULT_DAYS)
    if days < 1:
        raise NselfError(
            f"{config.where(SETTING)}: {SETTING}={days} must be at least 1",
            f"the recovery window to keep, in days (default {DEFAULT_DAYS})",
        )
    return days
