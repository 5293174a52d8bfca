"""Which database a `nself db` command works on, and the production safety rules."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nself_sdk import (
    Config,
    Migration,
    NotConfirmed,
    NselfError,
    Stack,
    find_project,
    load_config,
)

from .transport import DirectTransport, ServerTransport, StackTransport, Transport

if TYPE_CHECKING:
    from .journal import Mark, Run

URL_VAR = "NSELF_DB_URL"
BINDIR_VAR = "NSELF_PG_BINDIR"


@dataclass
class Target:
    project: Path
    config: Config
    env: str
    stack: Stack | None = None  # collected from the plugins on first use when not given

    def migrations(self) -> list[Migration]:
        """The plugins' migrations: the stack's."""
        if self.stack is None:
            from nself_sdk import stack

            self.stack = stack(self.config)
        return self.stack.migrations

    _settled: bool = field(default=False, repr=False, compare=False)

    @property
    def is_prod(self) -> bool:
        return self.env == "prod"

    def settle(self) -> None:
        """Finish or undo a restore that was interrupted (``journal.settle``), and say so;
        every ``nself db`` command does this first. Quiet when the server is unreachable."""
        if self._settled:
            return
        self._settled = True
        from nself_sdk.console import warn

        from .journal import settle_interrupted

        self.settle_recovery(warn)  # first: a killed recovery may have left the server down
        try:
            transport = self.transport()
        except NselfError:
            return
        settle_interrupted(transport, warn, self.bound_finisher(transport))

    def bound_finisher(self, transport: Transport) -> Callable[[Run], Callable[[Mark], None]]:
        """What redoes pg_cron's step of a restore killed after its swap (from the backup)."""
        from .backups import Store, bound_finisher

        store = Store.for_project(self.project, self.config)
        return lambda run: bound_finisher(transport, store, run.key)

    def settle_recovery(self, say: Callable[[str], None]) -> list[tuple[str, bool]]:
        """Finish or undo a point-in-time recovery that was killed (``Pitr.settle``); only
        when its journal is there (a file of this project), so it costs nothing otherwise.
        Returns what it said, each with whether it is settled."""
        from .backups import Store
        from .pitr import JOURNAL

        if not (Store.for_project(self.project, self.config).root / "pitr" / JOURNAL).exists():
            return []
        import psycopg

        from .pitr import pitr_for_target

        try:
            return [(text, True) for text in pitr_for_target(self).settle(say)]
        except (NselfError, psycopg.Error) as exc:
            why = exc.message if isinstance(exc, NselfError) else str(exc).strip()
            text = f"an interrupted point-in-time recovery could not be settled yet: {why}"
            say(text)
            return [(text, False)]

    def transport(self) -> Transport:
        url = os.environ.get(URL_VAR, "").strip()
        if url:
            bindir = os.environ.get(BINDIR_VAR, "").strip()
            return DirectTransport.from_url(url, Path(bindir) if bindir else None)
        from nself_builtins.shared.placement import runs_here

        if runs_here(self.config):  # dev, or the server `nself install` prepared
            return StackTransport(
                config=self.config,
                user=self.config.text("POSTGRES_USER", "postgres"),
                password=self.config.text("POSTGRES_PASSWORD"),
                dbname=self.config.text("POSTGRES_DB", "nself"),
            )
        if self.config.text("DEPLOY_HOST").strip():
            from nself_builtins.shared.remote import Server

            return ServerTransport(
                server=Server.from_config(self.config),
                project=self.config.project_name,
                user=self.config.text("POSTGRES_USER", "postgres"),
                password=self.config.text("POSTGRES_PASSWORD"),
                dbname=self.config.text("POSTGRES_DB", "nself"),
            )
        raise NselfError(
            f"reaching the {self.env} database is not available yet",
            f"set DEPLOY_HOST for {self.env} (the server `nself deploy` ships to), run it on "
            f"the server `nself install` prepared, or {URL_VAR}=postgres://user:pw@host:port/db",
        )


def resolve(env: str | None = None) -> Target:
    project = find_project()
    config = load_config(project, env)
    target = Target(project=project, config=config, env=config.env)
    target.settle()
    return target


def guard(target: Target, confirm: bool, dry_run: bool, what: str) -> None:
    """Production changes need ``--confirm``; a dry run never does."""
    if target.is_prod and not confirm and not dry_run:
        raise NotConfirmed(
            f"{what} on production needs --confirm",
            "look first with --dry-run, then run again with --confirm",
        )
