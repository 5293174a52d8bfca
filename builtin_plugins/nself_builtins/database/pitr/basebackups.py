"""Switching WAL archiving on, taking base backups and making sure what the server wrote
is archived: what a recovery later starts from and replays.

``BaseBackups.base_backup()`` streams ``pg_basebackup -Ft -X fetch`` (a self-contained tar)
into the backup folder with a manifest (sha256, start/end time, first WAL segment and LSN,
timeline); ``flush_wal()`` closes the current segment and waits for the archiver."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nself_sdk import NselfError

from ..durable import clean_leftovers, fsync_dir, temp_in, write_json
from ..transport import Transport
from .archive import Archive
from .cluster import ClusterControl
from .wal import END_POINT, archive_command, lsn, read_base

Say = Callable[[str], None]


@dataclass
class BaseBackups:
    """The base backups of one database (in ``base_dir``) and the WAL archiving they need."""

    transport: Transport
    control: ClusterControl
    archive: Archive
    base_dir: Path

    def enable(self, say: Say = lambda _: None) -> bool:
        """Turn WAL archiving on (ALTER SYSTEM); restarts the server when needed.

        Returns whether it restarted. Proves archiving works by archiving a segment.
        """
        from psycopg import sql

        self.control.prepare_archive(self.archive.path)
        wanted = {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": archive_command(self.archive.path),
            "archive_timeout": "60s",
        }
        with self.transport.connect(autocommit=True) as conn:
            current = {
                k: str(conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(k))).fetchone()[0])  # type: ignore[index]
                for k in wanted
            }
            for key, value in wanted.items():
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(key), sql.Literal(value)
                    )
                )
            conn.execute("SELECT pg_reload_conf()")
        restart = current["wal_level"] not in ("replica", "logical") or current[
            "archive_mode"
        ] not in ("on", "always")
        if restart:
            say("restarting PostgreSQL to turn WAL archiving on")
            self.control.stop()
            self.control.start()
        with self.transport.connect(autocommit=True) as conn:
            conn.execute("SELECT txid_current()")  # a commit: a segment to prove archiving with
        self.flush_wal()
        return restart

    # -- base backups ------------------------------------------------------------------------
    def base_backups(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.base_dir.glob("base-*.tar.json")):
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return sorted(found, key=lambda m: str(m.get("end", "")))

    def base_backup(self, say: Say = lambda _: None) -> dict[str, Any]:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o700)
        ignore = self.base_dir / ".gitignore"  # base backups hold the whole cluster
        if not ignore.exists():
            ignore.write_text("# nself: base backups stay out of version control\n*\n")
        clean_leftovers(self.base_dir, say)
        with self.transport.connect(autocommit=True) as conn:
            row = conn.execute(
                "SELECT current_setting('archive_mode'), current_setting('wal_level'), now()"
            ).fetchone()
        assert row is not None
        mode, level, started = row
        if mode not in ("on", "always") or level == "minimal":
            raise NselfError(
                f"WAL archiving is off (archive_mode={mode}, wal_level={level})",
                "turn it on with `nself db pitr enable`",
            )
        name = "base-" + datetime.now(UTC).strftime("%Y-%m-%d-%H-%M-%S") + ".tar"
        say(f"taking base backup {name}")
        with temp_in(self.base_dir, name) as (tmp, handle):
            done = self.transport.run_tool(
                "pg_basebackup",
                ["-D", "-", "-Ft", "-X", "fetch", "--checkpoint=fast", "--no-password", "-v"],
                stdout=handle,
            )
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            end = datetime.now(UTC)
            facts = read_base(tmp)
            reported = END_POINT.search(done.stderr.decode("utf-8", "replace"))
            manifest = {
                "name": name,
                "start": started.astimezone(UTC).isoformat(),
                "end": end.isoformat(),
                "size": tmp.stat().st_size,
                "sha256": facts["sha256"],
                "start_wal": facts["start_wal"],
                "start_lsn": facts["start_lsn"],
                "end_lsn": facts["end_lsn"] or (reported.group(1) if reported else None),
                "timeline": facts["timeline"],
            }
            os.replace(tmp, self.base_dir / name)
            fsync_dir(self.base_dir)
        write_json(self.base_dir / f"{name}.json", manifest)
        return manifest

    def end_lsn(self, base: dict[str, Any]) -> int | None:
        """Where a base backup becomes consistent (manifest, else its own backup_manifest)."""
        recorded = base.get("end_lsn")
        if not recorded:
            path = self.base_dir / str(base["name"])
            try:
                recorded = read_base(path)["end_lsn"] if path.is_file() else None
            except NselfError:
                recorded = None
        return lsn(str(recorded)) if recorded else None

    # -- WAL: archiving what is pending --------------------------------------------------------
    def flush_wal(self, timeout: float = 60) -> datetime:
        """Make sure every WAL record written so far is in the archive; returns the server's
        time just before (everything committed until then is archived).

        The current segment is closed only when something was written since the last switch
        (an idle server has nothing to archive: that returns at once); then this waits for
        the archiver, failing early with its error when the archive command fails."""
        with self.transport.connect(autocommit=True) as conn:
            row = conn.execute(
                "SELECT pg_switch_wal()::text, setting::bigint, clock_timestamp()"
                " FROM pg_settings WHERE name = 'wal_segment_size'"
            ).fetchone()
            assert row is not None
            position, size, began = lsn(str(row[0])), int(row[1]), row[2]
            wanted = None
            if position % size:  # a segment was closed: it must reach the archive
                found = conn.execute("SELECT pg_walfile_name(%s::pg_lsn)", (str(row[0]),))
                wanted = str(found.fetchone()[0])  # type: ignore[index]
            deadline = time.monotonic() + timeout
            while True:
                stats = conn.execute(
                    "SELECT last_archived_wal, last_failed_wal, last_failed_time,"
                    " last_archived_time FROM pg_stat_archiver"
                ).fetchone()
                pending = self._ready(conn)
                if (wanted is None or wanted in self.archive.names()) and not pending:
                    return began.astimezone(UTC)  # type: ignore[no-any-return]
                # the archiver's latest attempt failed (since it last succeeded): failing now
                if stats and stats[2] and (stats[3] is None or stats[2] > stats[3]):
                    raise NselfError(
                        f"the archive command fails for WAL segment {stats[1]}"
                        f" (last failure {stats[2]:%H:%M:%S})",
                        "see the server log for the archive_command error (a full disk, a"
                        " missing folder, permissions)",
                    )
                if time.monotonic() > deadline:
                    raise NselfError(
                        f"WAL segment {wanted or pending[0]} did not reach the archive within"
                        f" {timeout:g}s (the archiver is behind)",
                        "check the server log and the archive's disk",
                    )
                time.sleep(0.2)

    @staticmethod
    def _ready(conn: Any) -> list[str]:
        """Segments waiting for the archiver (``.ready``), when this role may look."""
        try:
            with conn.transaction():
                rows = conn.execute(
                    "SELECT name FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
                    " ORDER BY name"
                ).fetchall()
        except Exception:  # not a superuser nor pg_monitor: rely on the segment alone
            return []
        return [str(r[0]).removesuffix(".ready") for r in rows]
