"""What the archive covers: the current timeline's history (its ``.history`` file), the
first and last commit archived on each stretch of it, the recoverable window, and the plan
of a recovery to a target time (``Timeline.plan``: the window, the base backup to start
from, where the history has no data)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nself_sdk import NselfError, UsageError

from ..transport import Transport
from .archive import Archive
from .basebackups import BaseBackups
from .cluster import ClusterControl
from .wal import SEGMENT, lsn, segment_start

KEPT_FOLDERS = 1  # data folders moved aside by recoveries: the newest stays, older ones go


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


def fmt(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


@dataclass
class Span:
    """A stretch of the current timeline's history: ``timeline`` from ``start`` to ``end``
    (LSNs; ``end`` is where the history switched to the next timeline, None for the last)."""

    timeline: int
    start: int
    end: int | None
    first: datetime | None = None  # first and last commit archived in the stretch
    last: datetime | None = None

    def holds(self, position: int) -> bool:
        return position >= self.start and (self.end is None or position < self.end)


@dataclass
class Plan:
    target: datetime
    base: dict[str, Any]
    earliest: datetime
    newest: datetime
    segments: int
    to_end: bool = False  # nothing was committed after the target: replay every segment
    spans: list[Span] = field(default_factory=list)
    drop_kept: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        lines = [
            f"recover the whole cluster to {fmt(self.target)}",
            f"  recoverable window: {fmt(self.earliest)} .. {fmt(self.newest)}"
            " (newest restorable point: last commit in the WAL archive)",
            *[f"    {text}" for text in window_lines(self.spans, self.earliest)[1:]],
            f"  start from base backup {self.base['name']} (ended {self.base['end'][:19]},"
            f" timeline {self.base.get('timeline', 1)})",
            f"  replay archived WAL ({self.segments} segments on this timeline's history)"
            + (" to its end (nothing was committed after the target)" if self.to_end else ""),
            "  the server stops; its current data folder is kept aside, not deleted",
        ]
        for name, size in self.drop_kept.items():
            lines.append(
                f"  the data folder an earlier recovery kept, {name} ({size // 2**20} MiB),"
                " is deleted (one is kept: the one this recovery moves aside)"
            )
        return lines + self.notes


def window_lines(spans: list[Span], earliest: datetime | None) -> list[str]:
    """The recoverable stretches per timeline, for messages (first line: a title)."""
    lines = ["recoverable per timeline:"]
    for n, span in enumerate(spans):
        start = span.first
        if n == 0 or start is None or (earliest is not None and start < earliest):
            start = earliest if n == 0 or start is None else start
        end = span.last
        if start is None or end is None:
            lines.append(f"timeline {span.timeline}: no commit archived")
            continue
        left = "" if span.end is None else " (then a recovery branched off)"
        lines.append(f"timeline {span.timeline}: {fmt(start)} .. {fmt(max(start, end))}{left}")
    return lines


class Timeline:
    """Reads the current timeline's history and what of it the archive holds (the commits
    of each segment are read once per engine)."""

    def __init__(
        self,
        transport: Transport,
        control: ClusterControl,
        archive: Archive,
        backups: BaseBackups,
    ) -> None:
        self.transport = transport
        self.control = control
        self.archive = archive
        self.backups = backups
        self._commits: dict[str, list[tuple[int, datetime]]] = {}

    def current_timeline(self) -> int:
        with self.transport.connect(autocommit=True) as conn:
            row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
        return int(str(row[0])[:8], 16) if row else 1

    def history(self, timeline: int) -> list[Span]:
        """The stretches of WAL that lead to ``timeline`` (its ``.history`` file)."""
        spans: list[Span] = []
        start = 0
        if timeline > 1:
            text = self.archive.read(f"{timeline:08X}.history")
            if text is None:
                raise NselfError(
                    f"the archive has no history file for timeline {timeline}"
                    f" ({timeline:08X}.history)",
                    "recovery needs it: copy it back into the archive, or take a new base backup",
                )
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0].isdigit() and "/" in parts[1]:
                    switch = lsn(parts[1])
                    spans.append(Span(int(parts[0]), start, switch))
                    start = switch
        spans.append(Span(timeline, start, None))
        return spans

    def _segments_on(self, spans: list[Span]) -> list[tuple[Span, str]]:
        """The archived segments of each stretch, in history order."""
        files = self.archive.files()
        sizes = [files[n] for n in files if SEGMENT.match(n)]
        size = max(set(sizes), key=sizes.count) if sizes else 16 << 20
        out = []
        for span in spans:
            for name in sorted(n for n in files if SEGMENT.match(n)):
                if int(name[:8], 16) != span.timeline:
                    continue
                first = segment_start(name, size)
                if first + size > span.start and (span.end is None or first < span.end):
                    out.append((span, name))
        return out

    def _segment_commits(self, name: str) -> list[tuple[int, datetime]]:
        if name not in self._commits:
            self._commits[name] = [
                (lsn(where), datetime.fromisoformat(when).replace(tzinfo=UTC))
                for where, when in self.archive.commits(name)
            ]
        return self._commits[name]

    def spans(self, timeline: int | None = None) -> tuple[list[Span], int]:
        """The current history with the first and last archived commit of each stretch,
        read from the archive as a whole (newest segments first); and the segment count."""
        spans = self.history(self.current_timeline() if timeline is None else timeline)
        segments = self._segments_on(spans)
        for span in spans:
            mine = [name for owner, name in segments if owner is span]
            for name in reversed(mine):  # the last commit: from the newest segment back
                inside = [t for at, t in self._segment_commits(name) if span.holds(at)]
                if inside:
                    span.last = inside[-1]
                    break
            if span.last is None:
                continue
            for name in mine:  # the first commit: from the oldest segment on
                inside = [t for at, t in self._segment_commits(name) if span.holds(at)]
                if inside:
                    span.first = inside[0]
                    break
        return spans, len(segments)

    def usable(self, spans: list[Span]) -> tuple[list[dict[str, Any]], list[str]]:
        """Base backups this history can recover from (a base backup on a timeline the
        history left must have become consistent before the branch point)."""
        ok: list[dict[str, Any]] = []
        skipped: list[str] = []
        by_timeline = {span.timeline: span for span in spans}
        for base in self.backups.base_backups():
            span = by_timeline.get(int(base.get("timeline") or 1))
            if span is None:
                skipped.append(f"{base['name']} (timeline {base.get('timeline')}, abandoned)")
                continue
            if span.end is not None:
                end = self.backups.end_lsn(base)
                if end is None or end > span.end:
                    skipped.append(
                        f"{base['name']} (taken on timeline {span.timeline} after the point"
                        " this history branched off)"
                    )
                    continue
            ok.append(base)
        return ok, skipped

    def window(self) -> tuple[datetime | None, datetime | None, list[Span], list[str]]:
        """(earliest, newest restorable point, the stretches, base backups left out).

        Never inverted: when nothing was committed since the newest usable base backup,
        the window ends where that backup does."""
        spans, _count = self.spans()
        bases, skipped = self.usable(spans)
        if not bases:
            return None, None, spans, skipped
        ends = [datetime.fromisoformat(str(b["end"])) for b in bases]
        lasts = [s.last for s in spans if s.last is not None]
        newest = max([*lasts, max(ends)])
        return min(ends), newest, spans, skipped

    def plan(self, target: datetime, flush: bool = True) -> Plan:
        if not self.backups.base_backups():
            raise NselfError(
                "there is no base backup to recover from",
                "take one with `nself db pitr backup` (and regularly after that)",
            )
        archived_until = self.backups.flush_wal() if flush else None
        spans, count = self.spans()
        bases, skipped = self.usable(spans)
        if not bases:
            raise NselfError(
                "no base backup is on this server's current history: " + "; ".join(skipped[:3]),
                "take a new base backup with `nself db pitr backup`",
            )
        ends = [datetime.fromisoformat(str(b["end"])) for b in bases]
        earliest = min(ends)
        lasts = [s.last for s in spans if s.last is not None]
        last_commit = max(lasts) if lasts else None
        # nothing was committed between the last archived commit and the flush: up to the
        # flush every point is the state after that commit (replay to the archive's end)
        newest = max([*lasts, max(ends), *([archived_until] if archived_until else [])])
        outside = (
            f"{fmt(target)} is outside the recoverable window {fmt(earliest)} .. {fmt(newest)}"
        )
        if target < earliest or target > newest:
            raise NselfError(
                outside,
                "pick a time inside the window (the newest restorable point is the last "
                "commit archived)",
            )
        for before, after in itertools.pairwise(spans):
            gap_from = before.last or earliest
            gap_to = after.first
            if gap_to is not None and gap_from < target < gap_to:
                raise NselfError(
                    f"{fmt(target)} falls where this server's history has no data: timeline"
                    f" {before.timeline} was left at {fmt(gap_from)} (a point-in-time recovery"
                    f" branched off there) and timeline {after.timeline} begins at"
                    f" {fmt(gap_to)}; what was written on timeline {before.timeline} in"
                    " between is not on this history",
                    "pick a time before the branch or after the new timeline began ("
                    + "; ".join(window_lines(spans, earliest)[1:])
                    + ")",
                )
        usable = [b for b in bases if datetime.fromisoformat(str(b["end"])) <= target]
        kept = self.control.kept_folders()
        drop = dict(list(kept.items())[: max(0, len(kept) - (KEPT_FOLDERS - 1))])
        return Plan(
            target=target,
            base=usable[-1],
            earliest=earliest,
            newest=newest,
            segments=count,
            to_end=last_commit is None or target >= last_commit,
            spans=spans,
            drop_kept=drop,
            notes=[f"  left out: {text}" for text in skipped],
        )
