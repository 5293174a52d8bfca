"""`nself db replica ...`: streaming read replicas (engine: ``..replicas``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from nself_sdk import UsageError
from nself_sdk.console import emit_json, info, ok, warn

from .options import ConfirmOpt, EnvOpt, JsonOpt, guard, resolve, size

if TYPE_CHECKING:
    from ..replicas import Row

app = typer.Typer(
    help="Read replicas: PostgreSQL streaming hot standbys of the stack's database.",
    no_args_is_help=True,
)
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the replica to be healthy.")
]


@app.command("add")
def add_cmd(
    name: Annotated[
        str | None, typer.Argument(help="Its name (default: replica1, replica2, ...).")
    ] = None,
    env: EnvOpt = None,
    confirm: ConfirmOpt = False,
    no_start: Annotated[
        bool, typer.Option("--no-start", help="Write and prepare only; start it later.")
    ] = False,
    timeout: TimeoutOpt = 300.0,
    region: Annotated[
        str | None, typer.Option("--region", help="Not automated: see the error it gives.")
    ] = None,
    server_type: Annotated[
        str | None, typer.Option("--type", help="Not automated: see the error it gives.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a replica: base backup of the primary, its own slot, then streaming."""
    if region is not None or server_type is not None:
        raise UsageError(
            "nself does not create cloud servers: a replica runs beside the primary, on the "
            "machine or server the environment's stack runs on",
            "create and pay for a server yourself, then prepare it with `nself install`; "
            "nself db replica add NAME [--env staging|prod] adds a replica to that stack",
        )
    if timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    from ..replicas import add

    target = resolve(env)
    guard(target, confirm, False, "adding a replica")
    added = add(target, name, start=not no_start, timeout=timeout, say=info)
    if as_json:
        emit_json(
            {
                "name": added.name,
                "service": added.service,
                "file": added.file,
                "prepared": added.prepared,
                "slot_created": added.slot_created,
                "started": added.started,
                "replica": added.row.as_json() if added.row else None,
            }
        )
        return
    ok(f"replica {added.name}: service {added.service}, kept in {added.file} (POSTGRES_REPLICAS)")
    info("  read-only URL for services: ${DATABASE_REPLICA_URL} (all: ${DATABASE_REPLICA_URLS})")
    if added.row is not None:
        info(f"  {_describe(added.row)}")
    if not added.started:
        from nself_builtins.shared.placement import runs_here

        if runs_here(target.config):
            info("next: nself start (the replica takes a base backup, then streams)")
        else:
            info(f"next: nself deploy {target.env} (ships the replica to the server)")


@app.command("list")
def list_cmd(env: EnvOpt = None, as_json: JsonOpt = False) -> None:
    """Each replica's state and how far it is behind the primary (bytes and seconds)."""
    from ..replicas import rows

    target = resolve(env)
    found = rows(target)
    if as_json:
        emit_json([row.as_json() for row in found])
        return
    if not found:
        info("no replicas (`nself db replica add`)")
        return
    info(f"{'NAME':<14} {'STATE':<14} {'LAG':>10} {'LAG (s)':>9}  {'SLOT KEEPS':>10}  SERVICE")
    for row in found:
        lag = "-" if row.lag_bytes is None else size(row.lag_bytes)
        seconds = "-" if row.lag_seconds is None else f"{row.lag_seconds:.3f}"
        kept = "-" if row.retained_bytes is None else size(row.retained_bytes)
        service = row.service + (f" ({row.container})" if row.container else "")
        info(f"{row.name:<14} {row.state:<14} {lag:>10} {seconds:>9}  {kept:>10}  {service}")
    for row in found:
        if row.state == "removed":
            warn(
                f"the slot {row.slot} of the removed replica {row.name} keeps WAL on the primary",
                f"drop it: nself db replica remove {row.name}",
            )


@app.command("remove")
def remove_cmd(
    name: Annotated[str, typer.Argument(help="The replica to remove.")],
    env: EnvOpt = None,
    confirm: ConfirmOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove a replica: stop it, drop its slot, delete its container and data copy."""
    from ..replicas import remove

    target = resolve(env)
    guard(target, confirm, False, "removing a replica")
    removed = remove(target, name, say=info)
    if as_json:
        emit_json(asdict(removed))
        return
    where = f", taken out of {removed.file}" if removed.file else ""
    slot = "its slot dropped" if removed.slot_dropped else "no slot was left"
    ok(f"removed replica {removed.name}{where}; {slot}")
    if removed.stale:
        warn(
            f"{', '.join(removed.stale)} still use{'s' if len(removed.stale) == 1 else ''} "
            f"the replicas' old URLs, {removed.name}'s among them",
            "make them anew with the new ones: nself start",
        )
    from nself_builtins.shared.placement import runs_here

    if not runs_here(target.config):
        info(f"next: nself deploy {target.env} (the release no longer lists it)")


def _describe(row: Row) -> str:
    if row.state == "streaming":
        behind = "" if row.lag_bytes is None else f", {row.lag_bytes} bytes behind"
        return f"streaming from the primary{behind}"
    return f"state: {row.state}"
