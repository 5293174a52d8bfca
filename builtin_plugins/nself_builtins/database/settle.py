"""What a killed restore or point-in-time recovery left behind, finished or undone before a
``nself db`` command (or ``nself doctor``) works on the database; above ``target``,
``backups`` and ``pitr``, so those three import in one direction."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from nself_sdk import NselfError, find_project, load_config

from .target import Target

if TYPE_CHECKING:
    from .journal import Mark, Run
    from .transport import Transport


def resolve(env: str | None = None) -> Target:
    """The database a command works on, settled first."""
    project = find_project()
    config = load_config(project, env)
    target = Target(project=project, config=config, env=config.env)
    settle(target)
    return target


def settle(target: Target) -> None:
    """Finish or undo a restore that was interrupted (``journal.settle``), and say so;
    every ``nself db`` command does this first. Quiet when the server is unreachable."""
    if target.settled:
        return
    target.settled = True
    from nself_sdk.console import warn

    from .journal import settle_interrupted

    settle_recovery(target, warn)  # first: a killed recovery may have left the server down
    try:
        transport = target.transport()
    except NselfError:
        return
    settle_interrupted(transport, warn, bound_finisher(target, transport))


def bound_finisher(target: Target, transport: Transport) -> Callable[[Run], Callable[[Mark], None]]:
    """What redoes pg_cron's step of a restore killed after its swap (from the backup)."""
    from .backups import Store
    from .backups import bound_finisher as finisher

    store = Store.for_project(target.project, target.config)
    return lambda run: finisher(transport, store, run.key)


def settle_recovery(target: Target, say: Callable[[str], None]) -> list[tuple[str, bool]]:
    """Finish or undo a point-in-time recovery that was killed (``Pitr.settle``); only
    when its journal is there (a file of this project), so it costs nothing otherwise.
    Returns what it said, each with whether it is settled."""
    from .backups import Store
    from .pitr import JOURNAL

    if not (Store.for_project(target.project, target.config).root / "pitr" / JOURNAL).exists():
        return []
    import psycopg

    from .pitr import pitr_for_target

    try:
        return [(text, True) for text in pitr_for_target(target).settle(say)]
    except (NselfError, psycopg.Error) as exc:
        why = exc.message if isinstance(exc, NselfError) else str(exc).strip()
        text = f"an interrupted point-in-time recovery could not be settled yet: {why}"
        say(text)
        return [(text, False)]
