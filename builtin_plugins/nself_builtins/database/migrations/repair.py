"""``nself db migrate repair``: the explicit, audited way to realign the history with the
files (accept an edited file, forget a vanished one, settle an interrupted run)."""

from __future__ import annotations

from dataclasses import dataclass

from nself_sdk import NselfError, UsageError

from .effects import describe, effect_present
from .files import PROJECT, Item
from .history import Applied, History
from .sqltext import statements


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
    items: list[Item], applied: list[Applied], interrupted: str | None, only: str | None = None
) -> list[Repair]:
    """What realigns ``applied`` with ``items``; an interrupted run needs ``interrupted``
    (``applied``: it completed, ``pending``: it was undone). ``only`` (a version or
    ``version_name``) limits it to that one migration."""
    known = {i.key: i for i in items}
    repairs: list[Repair] = []
    rows = applied
    if only is not None:
        rows = [r for r in applied if only in (r.version, r.label, f"{r.source}:{r.label}")]
        if not rows:
            raise UsageError(
                f"no applied migration is called {only}",
                "name one that `nself db migrate status` lists as changed, missing or"
                " interrupted (its version or version_name)",
            )
    for row in rows:
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


def check_completed(history: History, repair: Repair, reason: str) -> list[str]:
    """Before an interrupted migration is marked applied: are its effects there? Returns
    what could not be checked (then ``reason`` is required); raises when one is missing."""
    if repair.action != "interrupted-applied":
        return []
    label = repair.row.label
    if repair.item is None:
        unknown = ["its file is gone, so what it did cannot be checked"]
    else:
        unknown = []
        for statement in statements(repair.item.up_sql, repair.item.where):
            verdict = effect_present(history.conn, statement)
            if verdict is False:
                raise NselfError(
                    f"{repair.item.where}:{statement.line}: {label} did not complete:"
                    f" {describe(statement)} is not there (or not valid); nothing was changed",
                    f"mark it pending and run it again: `nself db migrate repair {label}"
                    " --interrupted pending --yes`, then `nself db migrate up`",
                )
            if verdict is None:
                unknown.append(f"line {statement.line} ({statement.kind})")
    if unknown and not reason.strip():
        raise UsageError(
            f"cannot check that {label} completed: " + ", ".join(unknown[:3]),
            "look at the database yourself, then say why with --reason (kept in the audit log)",
        )
    return unknown


def apply_repair(history: History, repair: Repair, reason: str) -> None:
    """Change the history as ``repair`` says, with its audit row, in one transaction."""
    check_completed(history, repair, reason)
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
