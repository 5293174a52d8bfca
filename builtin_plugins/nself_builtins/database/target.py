"""Which database a `nself db` command works on, and the production safety rules."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nself_sdk import (
    Config,
    Migration,
    NotConfirmed,
    NselfError,
    Stack,
)

from .transport import DirectTransport, ServerTransport, StackTransport, Transport

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

    # set once ``settle.settle`` has run for it (every command settles at most once)
    settled: bool = field(default=False, repr=False, compare=False)

    @property
    def is_prod(self) -> bool:
        return self.env == "prod"

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


def guard(target: Target, confirm: bool, dry_run: bool, what: str) -> None:
    """Production changes need ``--confirm``; a dry run never does."""
    if target.is_prod and not confirm and not dry_run:
        raise NotConfirmed(
            f"{what} on production needs --confirm",
            "look first with --dry-run, then run again with --confirm",
        )
