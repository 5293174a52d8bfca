"""The engine the commands use: one database's point-in-time recovery, where its parts
meet (``basebackups``, ``timeline``, ``recovery``), and which server and archive the
command's target has."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nself_sdk import NselfError

from ..transport import Transport
from .archive import ARCHIVE_VAR, Archive, LocalArchive, ServerArchive
from .basebackups import BaseBackups
from .cluster import (
    DATA_VAR,
    OS_USER_VAR,
    STACK_ARCHIVE,
    ClusterControl,
    LocalCluster,
    StackCluster,
)
from .recovery import Recovery, Say
from .timeline import Plan, Span, Timeline

if TYPE_CHECKING:
    from ..target import Target


def _quiet(_: str) -> None:
    return None


class Pitr:
    """Point-in-time recovery of one database: ``backups`` takes base backups and keeps WAL
    archived, ``timeline`` reads what the archive covers and plans a recovery, ``recovery``
    carries it out (and settles one that was killed)."""

    def __init__(
        self, transport: Transport, control: ClusterControl, archive: Archive, base_dir: Path
    ) -> None:
        self.transport = transport
        self.control = control
        self.archive = archive
        self.base_dir = base_dir
        self.backups = BaseBackups(transport, control, archive, base_dir)
        self.timeline = Timeline(transport, control, archive, self.backups)
        self.recovery = Recovery(transport, control, archive, base_dir)

    def enable(self, say: Say = _quiet) -> bool:
        return self.backups.enable(say)

    def base_backups(self) -> list[dict[str, Any]]:
        return self.backups.base_backups()

    def base_backup(self, say: Say = _quiet) -> dict[str, Any]:
        return self.backups.base_backup(say)

    def window(self) -> tuple[datetime | None, datetime | None, list[Span], list[str]]:
        return self.timeline.window()

    def plan(self, target: datetime, flush: bool = True) -> Plan:
        return self.timeline.plan(target, flush)

    def recover(self, plan: Plan, say: Say = _quiet) -> Path:
        return self.recovery.recover(plan, say)

    def settle(self, say: Say = _quiet) -> list[str]:
        return self.recovery.settle(say)


def pitr_for_target(target: Target) -> Pitr:
    """The PITR engine for the command's target database."""
    from ..backups import Store
    from ..target import URL_VAR

    store = Store.for_project(target.project, target.config)
    base_dir = store.root / "pitr"
    data = os.environ.get(DATA_VAR, "").strip()
    archive = os.environ.get(ARCHIVE_VAR, "").strip()
    if data and archive:
        bindir_raw = os.environ.get("NSELF_PG_BINDIR", "").strip()
        bindir = Path(bindir_raw) if bindir_raw else None
        return Pitr(
            transport=target.transport(),
            control=LocalCluster(Path(data), bindir, os.environ.get(OS_USER_VAR) or None),
            archive=LocalArchive(Path(archive), bindir),
            base_dir=base_dir,
        )
    if target.env == "dev" and not os.environ.get(URL_VAR, "").strip():
        transport = target.transport()
        return Pitr(
            transport=transport,
            control=StackCluster(transport),
            archive=ServerArchive(transport, STACK_ARCHIVE),
            base_dir=base_dir,
        )
    raise NselfError(
        f"point-in-time recovery of the {target.env} database is not available yet",
        f"it works for the local stack, and for a server on this machine with {DATA_VAR} "
        f"and {ARCHIVE_VAR}; otherwise restore a backup (`nself db restore`)",
    )
