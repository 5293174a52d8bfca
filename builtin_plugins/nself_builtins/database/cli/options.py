"""What the `nself db` command groups share: their options and the target they work on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..target import Target

EnvOpt = Annotated[str | None, typer.Option("--env", help="local, staging or prod.")]
ConfirmOpt = Annotated[bool, typer.Option("--confirm", help="Required for production changes.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
LockOpt = Annotated[
    float, typer.Option("--lock-timeout", help="Seconds to wait for another run's lock.")
]


# The command groups are registered on every start-up: the target/transport machinery is
# imported only when a db command runs.
def resolve(env: str | None) -> Target:
    from ..settle import resolve as resolve_target

    return resolve_target(env)


def guard(target: Target, confirm: bool, dry_run: bool, action: str) -> None:
    from ..target import guard as guard_target

    guard_target(target, confirm, dry_run, action)


def size(n: int) -> str:
    from ..retention import size_text

    return size_text(n)
