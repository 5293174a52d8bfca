"""Point-in-time recovery: continuous WAL archiving plus base backups.

* ``wal``: files read without a server. ``archive_command()`` is what PostgreSQL runs for
  every finished WAL segment: copy into the archive, never overwriting a segment with
  different content; ``read_base()`` and ``backup_label()`` read a base backup's tar.
* ``archive``: the WAL archive, a folder on this machine or on the server's (``Archive``).
* ``cluster``: the server, stopped, started and given a new data folder
  (``ClusterControl``); ``LocalCluster`` drives a server whose data folder is on this
  machine (``pg_ctl``), ``StackCluster`` the stack's postgres service.
* ``basebackups``: switching archiving on, base backups (``pg_basebackup -Ft -X fetch``, a
  self-contained tar with a manifest) and forcing the current WAL segment into the archive.
* ``timeline``: the current history, the window (end of the oldest usable base backup ..
  last commit in the archive) and the plan of a recovery to a target time.
* ``recovery``: stops the server, keeps the old data folder aside, unpacks the base backup,
  sets ``recovery_target_time`` and waits for the promotion; any failure puts the old data
  folder back. Its steps go to a journal (``.recovery.json`` in the base backup folder)
  under a lock; ``settle`` (every ``nself db`` command, ``nself doctor``) finishes or
  undoes a recovery that was killed.
* ``engine``: ``Pitr``, where those parts meet, and ``pitr_for_target``, the engine of the
  command's target database.
"""

from __future__ import annotations

from .archive import ARCHIVE_VAR, Archive, LocalArchive, ServerArchive
from .basebackups import BaseBackups
from .cluster import DATA_VAR, HELPER_LABEL, OS_USER_VAR, ClusterControl, LocalCluster, StackCluster
from .engine import Pitr, pitr_for_target
from .recovery import JOURNAL, Recovery
from .timeline import Plan, Span, Timeline, fmt, parse_target, window_lines
from .wal import archive_command, backup_label, read_base

__all__ = [
    "ARCHIVE_VAR",
    "DATA_VAR",
    "HELPER_LABEL",
    "JOURNAL",
    "OS_USER_VAR",
    "Archive",
    "BaseBackups",
    "ClusterControl",
    "LocalArchive",
    "LocalCluster",
    "Pitr",
    "Plan",
    "Recovery",
    "ServerArchive",
    "Span",
    "StackCluster",
    "Timeline",
    "archive_command",
    "backup_label",
    "fmt",
    "parse_target",
    "pitr_for_target",
    "read_base",
    "window_lines",
]
