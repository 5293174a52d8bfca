"""Recovering to a plan (``timeline.Plan``), and finishing or undoing a recovery that was
killed.

``Recovery.recover(plan)`` stops the server, keeps the old data folder aside, unpacks the
base backup, sets ``recovery_target_time`` and waits for the promotion; any failure puts
the old data folder back. It writes its steps to a journal (``.recovery.json`` in the base
backup folder) and holds a lock while it works; ``Recovery.settle`` (every ``nself db``
command, ``nself doctor``) finishes or undoes one that was killed."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nself_sdk import NselfError

from ..durable import file_sha256, fsync_dir, held, write_json
from ..journal import checkpoint
from ..transport import Transport
from .archive import Archive
from .cluster import ClusterControl
from .timeline import Plan

Say = Callable[[str], None]
RECOVERY_KEYS = (
    "restore_command",
    "recovery_target_time",
    "recovery_target_action",
    "recovery_target_timeline",
)
JOURNAL = ".recovery.json"  # a recovery's steps, in the base backup folder
JOURNAL_LOCK = ".recovery.lock"  # held by the recovering process (flock)


@dataclass
class Recovery:
    """Recovering one database's server from the base backups in ``base_dir``."""

    transport: Transport
    control: ClusterControl
    archive: Archive
    base_dir: Path

    def recover(self, plan: Plan, say: Say = lambda _: None) -> Path:
        """Recover to ``plan``; returns where the previous data folder is kept.

        Each step is written to the journal first, so a recovery that is killed is finished
        or undone by the next nself (``settle``): before the data folder was replaced the
        server is started again as it was; while it was replaced the previous folder is
        put back; once the base backup is in place the recovery is completed (or, when it
        cannot be, undone)."""
        base = self.base_dir / plan.base["name"]
        if not base.is_file() or file_sha256(base) != plan.base["sha256"]:
            raise NselfError(
                f"base backup {plan.base['name']} is missing or damaged; nothing was changed",
                "take a new base backup; older points in time may be lost",
            )
        archive = shlex.quote(self.archive.path.rstrip("/"))
        settings = {
            "restore_command": f'cp {archive}/"%f" "%p"',
            "recovery_target_timeline": "latest",
        }
        if not plan.to_end:
            settings["recovery_target_time"] = plan.target.isoformat()
            settings["recovery_target_action"] = "promote"
        aside = self.control.aside_for(datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
        entry = {
            "aside": str(aside),
            "base": plan.base["name"],
            "target": plan.target.isoformat(),
            "at": datetime.now(UTC).isoformat(),
        }
        with self._journal() as step:
            step(entry, "stopping")
            say("stopping the server")
            self.control.stop()
            checkpoint("pitr-stopped")
            step(entry, "replacing")
            try:
                self.control.replace_data(base, settings, aside)
            except BaseException as exc:  # the data folder is back: run it again
                self.control.start()
                self._forget()
                message = exc.message if isinstance(exc, NselfError) else str(exc)
                raise NselfError(
                    f"recovery failed before it began, the previous data is in place and the"
                    f" server runs again: {message}",
                    "check the disk of the data folder (it must hold the base backup beside"
                    " the current data)",
                ) from None
            step(entry, "recovering")
            checkpoint("pitr-replaced")
            say(f"recovering (the previous data folder is kept at {aside})")
            try:
                self.control.start()
                self._wait_promoted()
            except BaseException as exc:
                detail = self.control.log_tail()
                self._put_back(aside)
                self._forget()
                message = exc.message if isinstance(exc, NselfError) else str(exc)
                raise NselfError(
                    f"recovery failed, the previous data is back in place: {message}"
                    + (f" ({detail})" if detail and detail not in message else ""),
                ) from None
            checkpoint("pitr-promoted")
            self._finish_recovery()
            self._forget()
        if plan.drop_kept:  # confirmed with the plan: the older kept folders go
            self.control.remove_kept(list(plan.drop_kept))
            say("deleted " + ", ".join(plan.drop_kept) + " (kept by an earlier recovery)")
        return aside

    # -- the journal: finishing or undoing a recovery that was killed --------------------------
    @contextlib.contextmanager
    def _journal(self) -> Iterator[Callable[[dict[str, Any], str], None]]:
        """Hold the recovery lock while recovering; yields ``step(entry, phase)``."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.base_dir / JOURNAL_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise NselfError(
                    "another nself is recovering this database right now", "wait for it"
                ) from None

            def step(entry: dict[str, Any], phase: str) -> None:
                write_json(self.base_dir / JOURNAL, {**entry, "phase": phase})

            yield step
        finally:
            os.close(fd)

    def _forget(self) -> None:
        (self.base_dir / JOURNAL).unlink(missing_ok=True)
        fsync_dir(self.base_dir)

    def _put_back(self, aside: Path) -> None:
        """The data folder from before the recovery, and the server running on it."""
        self.control.stop()
        self.control.put_back(aside)
        self.control.start()

    def _finish_recovery(self) -> None:
        with self.transport.connect(autocommit=True) as conn:
            for key in RECOVERY_KEYS:
                conn.execute(f"ALTER SYSTEM RESET {key}")
            conn.execute("SELECT pg_reload_conf()")

    def settle(self, say: Say = lambda _: None) -> list[str]:
        """Finish or undo a recovery that was killed (its journal without its lock)."""
        path = self.base_dir / JOURNAL
        if not path.is_file():
            return []
        if held(self.base_dir / JOURNAL_LOCK):
            return []  # a recovery is running: not ours to touch
        try:
            entry = json.loads(path.read_text())
            aside, phase, target = Path(entry["aside"]), entry["phase"], entry["target"]
        except (OSError, ValueError, KeyError, TypeError):
            text = f"{path} is unreadable: an interrupted point-in-time recovery left it"
            say(text)
            return [text]
        say("an interrupted point-in-time recovery is being settled")
        moved = aside.name in self.control.kept_folders()
        if phase == "stopping" or (phase == "replacing" and not moved):
            self.control.start()
            text = (
                "an interrupted point-in-time recovery had stopped the server before it changed"
                " anything: the server runs again, as before"
            )
        elif phase == "replacing":
            self._put_back(aside)
            text = (
                "an interrupted point-in-time recovery was undone: it was killed while it"
                f" replaced the data folder, which is back in place ({aside.name} returned);"
                " the server runs again, as before"
            )
        else:
            try:
                self.control.start()
                self._wait_promoted()
            except NselfError as exc:
                self._put_back(aside)
                text = (
                    f"an interrupted point-in-time recovery could not be finished ({exc.message}):"
                    " undone, the previous data folder is back in place and the server runs"
                )
            else:
                self._finish_recovery()
                text = (
                    f"an interrupted point-in-time recovery to {target} was finished; the"
                    f" previous data folder is kept at {aside}"
                )
        self._forget()
        say(text)
        return [text]

    def _wait_promoted(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.transport.connect(dbname="postgres", autocommit=True) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row and not row[0]:
                        return
            except NselfError:
                pass
            time.sleep(0.3)
        raise NselfError("the server did not finish recovery in time")
