"""Checksummed, locked, transactional schema migrations.

The project's ``migrations/<version>_<name>/up.sql`` (and ``down.sql``) and the plugins'
migrations (the stack's, from ``contribute_migrations``) run in one order (``files``).
The history in the database (``history``) records every applied one; the runner
(``runner``) refuses to go on when an applied file changed or vanished, or when a new file
sorts before applied ones of the same source. ``repair`` is the explicit, audited way out.

The commands (``nself db migrate ...``) and the ``migrations`` check of ``nself doctor``
share the functions below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .files import (
    PROJECT,
    Item,
    all_migrations,
    create,
    ordered,
    plugin_migrations,
    project_migrations,
)
from .history import LOCK_KEY, MigrationsBlocked
from .runner import Outcome, Runner, Say

if TYPE_CHECKING:
    from nself_sdk import Problem

    from ..target import Target


def _quiet(_: str) -> None:
    return None


def migration_items(target: Target) -> list[Item]:
    """Every migration of ``target``'s project in run order: its files and the stack's."""
    return all_migrations(target.project, target.migrations())


def migration_runner(target: Target, lock_timeout: float = 60.0, say: Say = _quiet) -> Runner:
    """The runner of every migration (``migration_items``) on ``target``'s database."""
    items = migration_items(target)
    return Runner(
        target.transport(),
        items,
        lock_timeout=lock_timeout,
        say=say,
        secret=target.config.text,
    )


def migration_status(target: Target) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Each migration's state on ``target``'s database, and where files and history
    disagree (``nself db migrate status|verify`` and ``nself doctor``)."""
    return migration_runner(target).status()


__all__ = [
    "LOCK_KEY",
    "PROJECT",
    "Item",
    "MigrationsBlocked",
    "Outcome",
    "Runner",
    "create",
    "migration_items",
    "migration_runner",
    "migration_status",
    "ordered",
    "plugin_migrations",
    "project_migrations",
]
