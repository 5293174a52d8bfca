"""What ``nself db pitr status`` reports, built in plain functions over the engine
(``pitr``) and its retention rule (``retention``): the command prints it or emits its JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from nself_sdk import NselfError

if TYPE_CHECKING:
    from .pitr import Span
    from .retention import PrunePlan
    from .target import Target


@dataclass
class PitrStatus:
    bases: list[dict[str, Any]]
    earliest: datetime | None
    newest: datetime | None
    spans: list[Span]
    left_out: list[str]
    kept: dict[str, int]  # data folders a recovery kept, with their size
    days: int  # PITR_RETENTION_DAYS
    prune: PrunePlan | None  # what prune would delete; None when it cannot tell
    note: str = ""  # why it cannot

    def to_json(self) -> dict[str, Any]:
        retention: dict[str, Any] = {"days": self.days}
        retention["prune"] = self.prune.to_json() if self.prune is not None else None
        if self.prune is None:
            retention["note"] = self.note
        return {
            "base_backups": self.bases,
            "earliest": self.earliest.isoformat() if self.earliest else None,
            "newest": self.newest.isoformat() if self.newest else None,
            "timelines": [
                {
                    "timeline": span.timeline,
                    "first_commit": span.first.isoformat() if span.first else None,
                    "last_commit": span.last.isoformat() if span.last else None,
                    "branched_off": span.end is not None,
                }
                for span in self.spans
            ],
            "left_out": self.left_out,
            "kept_data_folders": self.kept,
            "retention": retention,
        }

    def lines(self) -> list[str]:
        from .pitr import fmt, window_lines
        from .retention import size_text

        out = [f"  base backups: {len(self.bases)}"]
        if self.earliest and self.newest:
            out.append(f"  recoverable window: {fmt(self.earliest)} .. {fmt(self.newest)}")
            if len(self.spans) > 1:
                out += [f"    {line}" for line in window_lines(self.spans, self.earliest)[1:]]
        else:
            out.append("  nothing is recoverable yet (`nself db pitr backup`)")
        out += [f"  not usable for this history: {text}" for text in self.left_out]
        out += [f"  kept by a recovery: {n} ({size_text(b)})" for n, b in self.kept.items()]
        out.append(f"  retention: PITR_RETENTION_DAYS={self.days}")
        plan = self.prune
        if plan is None:
            out.append(f"  prune: nothing to do ({self.note})")
        else:
            out.append(
                f"  `nself db pitr prune --yes` would delete {len(plan.drop)} base backup(s),"
                f" {len(plan.wal)} WAL file(s) and {len(plan.folders)} kept data folder(s),"
                f" freeing {size_text(plan.freed)}"
            )
        return out


def pitr_status(target: Target) -> PitrStatus:
    """Base backups, the recoverable window (by timeline), what a recovery kept and what
    the retention rule would prune now."""
    from .pitr import pitr_for_target
    from .retention import configured_days, plan_prune

    days = configured_days(target.config)
    engine = pitr_for_target(target)
    bases = engine.base_backups()
    earliest, newest, spans, left_out = engine.window()
    try:
        plan: PrunePlan | None = plan_prune(engine, days)
        note = ""
    except NselfError as exc:
        plan, note = None, exc.message
    kept = engine.control.kept_folders()
    return PitrStatus(bases, earliest, newest, spans, left_out, kept, days, plan, note)
