"""`nself db pitr ...`: point-in-time recovery (engine: ``..pitr``, ``..retention``)."""

from __future__ import annotations

from typing import Annotated

import typer

from nself_sdk import UsageError, require_yes
from nself_sdk.console import emit_json, info, ok

from .options import ConfirmOpt, DryRunOpt, EnvOpt, JsonOpt, guard, resolve, size

app = typer.Typer(
    help="Point-in-time recovery from base backups and archived WAL.",
    invoke_without_command=True,
)


@app.callback()
def pitr_cmd(
    ctx: typer.Context,
    target_time: Annotated[
        str | None, typer.Option("--target", help='e.g. "2026-05-01 14:30:00 UTC".')
    ] = None,
    env: EnvOpt = None,
    confirm: ConfirmOpt = False,
    dry_run: DryRunOpt = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before recovering.")] = False,
) -> None:
    """Recover the whole cluster to an instant (shows the plan and window first)."""
    if ctx.invoked_subcommand is not None:
        return
    if target_time is None:
        raise UsageError('say when: --target "2026-05-01 14:30:00 UTC"')
    from ..pitr import fmt, parse_target, pitr_for_target

    target = resolve(env)
    guard(target, confirm, dry_run, "point-in-time recovery")
    when = parse_target(target_time)
    engine = pitr_for_target(target)
    plan = engine.plan(when)
    for line in plan.describe():
        info(line)
    if dry_run:
        info("dry run: nothing changed")
        return
    require_yes(
        "Stop the database and recover to this point?",
        yes,
        needs="a point-in-time recovery (the database stops) needs confirmation",
    )
    aside = engine.recover(plan, say=info)
    ok(f"recovered to {fmt(when)}; the previous data folder is kept at {aside}")


@app.command("enable")
def enable_cmd(env: EnvOpt = None, confirm: ConfirmOpt = False) -> None:
    """Turn continuous WAL archiving on (restarts PostgreSQL if needed) and prove it."""
    from ..pitr import pitr_for_target

    target = resolve(env)
    guard(target, confirm, False, "turning WAL archiving on")
    restarted = pitr_for_target(target).enable(say=info)
    ok(
        "WAL archiving is on and a segment reached the archive"
        + (" (restarted)" if restarted else "")
    )
    info("  next: `nself db pitr backup` takes the base backup recoveries start from")


@app.command("backup")
def base_cmd(env: EnvOpt = None) -> None:
    """Take a base backup (the starting point of every recovery)."""
    from ..pitr import pitr_for_target

    manifest = pitr_for_target(resolve(env)).base_backup(say=info)
    ok(f"base backup {manifest['name']} ({size(manifest['size'])})")


@app.command("status")
def status_cmd(env: EnvOpt = None, as_json: JsonOpt = False) -> None:
    """Show base backups, archived WAL, the recoverable window and retention."""
    from ..pitr_status import pitr_status

    status = pitr_status(resolve(env))
    if as_json:
        emit_json(status.to_json())
        return
    for line in status.lines():
        info(line)


@app.command("prune")
def prune_cmd(
    yes: Annotated[bool, typer.Option("--yes", help="Really delete.")] = False,
    days: Annotated[
        int | None, typer.Option("--days", help="Override PITR_RETENTION_DAYS.")
    ] = None,
    env: EnvOpt = None,
    confirm: ConfirmOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply PITR_RETENTION_DAYS to base backups and WAL (dry run unless --yes)."""
    from nself_sdk import require_confirmation, safety_rule

    from ..pitr import pitr_for_target
    from ..retention import apply_prune, check_days, configured_days, plan_prune, when_text

    if days is not None:
        check_days(days, "--days")
    target = resolve(env)
    keep_days = days if days is not None else configured_days(target.config)
    engine = pitr_for_target(target)
    plan = plan_prune(engine, keep_days)
    if not yes:
        if as_json:
            emit_json(plan.to_json())
            return
        for line in plan.describe():
            info(line)
        info("dry run: nothing deleted; add --yes to delete")
        return
    if not as_json and safety_rule(target.env, "delete-data") != "free":
        for line in plan.describe():  # what the confirmation is about
            info(line)
    require_confirmation(
        target.config, "delete-data", confirm, detail="deletes PITR base backups and WAL"
    )
    apply_prune(engine, plan)
    if as_json:
        emit_json(plan.to_json())
        return
    for line in plan.describe():
        info(line)
    ok(
        f"deleted {len(plan.drop)} base backup(s) and {len(plan.wal)} WAL file(s);"
        f" every point from {when_text(plan.earliest_after)} stays recoverable"
    )
