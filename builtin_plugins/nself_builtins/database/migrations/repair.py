"""``nself db migrate repair``: the explicit, audited way to realign the history with the
files (accept an edited file, forget a vanished one, settle an interrupted run)."""

from __future__ import annotations

from dataclasses import dataclass

from nself_sdk import UsageError

from .files import PROJECT, Item
from .history import Applied, History


@dataclass(frozen=True)
class Repair:
    action: str  # forget | accept | interrupted-applied | interrupted-pending
    row: Applied
    item: Item | None

    @property
    def text(self) -> str:
        row = self.row
        label = row.label + ("" if row.source == PROJECT else f" ({row.source})")
        if self.action == "forget":
            return f"forget {label}: applied but its file is gone"
        if self.action == "accept":
            now = self.item.sha256[:12] if self.item else ""
            return f"accept the edited {label} (sha256 {row.sha256[:12]} -> {now})"
        if self.action == "interrupted-applied":
            return f"mark the interrupted {label} as applied"
        return f"mark the interrupted {label} as not applied"


def plan_repairs(
    items: list[Item], applied: list[Applied], interrupted: str | None
) -> list[Repair]:
    """What realigns ``applied`` with ``items``; an interrupted run needs ``interrupted``
    (``applied``: it completed, ``pending``: it was undone)."""
    known = {i.key: i for i in items}
    repairs: list[Repair] = []
    for row in applied:
        item = known.get(row.key)
        if row.state == "running":
            if interrupted not in ("applied", "pending"):
                raise UsageError(
                    f"{row.label} was interrupted: say what happened "
                    "with --interrupted applied (it completed) or pending (undone)"
                )
            repairs.append(Repair(f"interrupted-{interrupted}", row, item))
        elif item is None:
            repairs.append(Repair("forget", row, None))
        elif item.sha256 != row.sha256:
            repairs.append(Repair("accept", row, item))
    return repairs


def apply_repair(history: History, repair: Repair, reason: str) -> None:
    """Change the history as ``repair`` says, with its audit row, in one transaction."""
    row, item = repair.row, repair.item
    with history.conn.transaction():
        if repair.action in ("forget", "interrupted-pending"):
            history.forget(row.source, row.version)
        elif repair.action == "accept" and item is not None:
            history.accept(row.source, row.version, item.sha256)
        else:
            history.mark_applied(row.source, row.version)
        detail = repair.text + (f"; reason: {reason}" if reason else "")
        history.audit(
            f"repair-{repair.action}",
            row.source,
            row.version,
            row.name,
            item.sha256 if item else row.sha256,
            detail,
        )
