"""`nself db migrate ...`: checksummed schema migrations (engine: ``..migrations``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from nself_sdk import EXIT_FAILED, NselfError
from nself_sdk.console import emit_json, info, ok, warn

from .options import ConfirmOpt, DryRunOpt, EnvOpt, JsonOpt, LockOpt, guard, resolve

if TYPE_CHECKING:
    from ..target import Target

app = typer.Typer(help="Checksummed schema migrations.", no_args_is_help=True)


@app.command("create")
def create_cmd(
    name: Annotated[
        str | None, typer.Argument(help="What it does, e.g. add_users (--tenant: create_TABLE).")
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            metavar="TABLE",
            help="Write a multi-tenant TABLE (tenant_id, source_account_id) and its Hasura "
            "permissions, filtered on X-Hasura-Tenant-Id.",
        ),
    ] = None,
) -> None:
    """Create migrations/<version>_<name>/ with an up.sql and a down.sql."""
    from nself_sdk import UsageError, find_project

    from ..migrations import create

    project = find_project()
    if tenant is not None:
        from ..tenant import create_tenant_table

        written = create_tenant_table(project, tenant, name)
        ok(f"created {', '.join(written)}")
        info("  next: add your columns, then nself db migrate up (and apply the metadata)")
        return
    if name is None:
        raise UsageError("name the migration", "e.g. nself db migrate create add_users")
    folder = create(project, name)
    ok(f"created {folder.relative_to(project)}/up.sql and down.sql")


@app.command("up")
def up_cmd(
    to: Annotated[str | None, typer.Option("--to", help="Stop after this version.")] = None,
    env: EnvOpt = None,
    confirm: ConfirmOpt = False,
    dry_run: DryRunOpt = False,
    lock_timeout: LockOpt = 60.0,
) -> None:
    """Apply pending migrations, each in its own transaction, after checking checksums."""
    from ..migrations import migration_runner

    target = resolve(env)
    guard(target, confirm, dry_run, "migrating")
    if dry_run:
        dry_run_up(target, to)
        return
    outcome = migration_runner(target, lock_timeout, say=info).up(to)
    if outcome.applied:
        ok(f"applied {len(outcome.applied)} migration(s) to {target.env}")
    else:
        ok(f"the {target.env} database is up to date")


def dry_run_up(target: Target, to: str | None) -> None:
    """What `migrate up` would apply; every migration when the history cannot be read."""
    from ..migrations import Runner, migration_items

    items = migration_items(target)
    try:
        transport = target.transport()
    except NselfError as exc:
        if "not available yet" not in exc.message:
            raise
        warn(
            f"cannot read the {target.env} history yet ({exc.message}); "
            "listing every migration the project has"
        )
        for item in items:
            info(f"  would apply (if not applied): {item.label}  sha256 {item.sha256[:12]}")
        return
    pending = Runner(transport, items, say=info).pending(to)
    if not pending:
        ok(f"dry run: the {target.env} database is up to date")
        return
    for item in pending:
        extra = "" if item.transactional else " (no transaction)"
        info(f"  would apply {item.label}{extra}  sha256 {item.sha256[:12]}")
    info(f"dry run: {len(pending)} migration(s) would run; nothing changed")


@app.command("down")
def down_cmd(
    steps: Annotated[int, typer.Option("--steps", help="How many to revert.")] = 1,
    env: EnvOpt = None,
    confirm: ConfirmOpt = False,
    dry_run: DryRunOpt = False,
    lock_timeout: LockOpt = 60.0,
) -> None:
    """Revert the newest applied migrations with their down.sql."""
    from ..migrations import MigrationsBlocked, migration_runner

    target = resolve(env)
    guard(target, confirm, dry_run, "reverting migrations")
    runner = migration_runner(target, lock_timeout, say=info)
    if dry_run:
        rows, problems = runner.status()
        if problems:
            raise MigrationsBlocked(problems)
        for row in newest_applied(rows, steps):
            info(f"would revert {row['version']}_{row['name']}")
        return
    outcome = runner.down(steps)
    ok(f"reverted {len(outcome.reverted)} migration(s)")


def newest_applied(rows: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` most recently applied of the status ``rows``."""
    applied = [r for r in rows if r["state"] == "applied"]
    applied.sort(key=lambda r: r["applied_at"] or "", reverse=True)
    return applied[:count]


@app.command("status")
def status_cmd(env: EnvOpt = None, as_json: JsonOpt = False) -> None:
    """Show every migration: applied, pending, changed, missing or interrupted."""
    from ..migrations import migration_status

    target = resolve(env)
    rows, problems = migration_status(target)
    if as_json:
        emit_json(
            {"env": target.env, "migrations": rows, "problems": [p.message for p in problems]}
        )
    else:
        if not rows:
            info("no migrations yet (create one with `nself db migrate create NAME`)")
        for row in rows:
            src = "" if row["source"] == "project" else f" [{row['source']}]"
            when = f"  {row['applied_at'][:19]} by {row['applied_by']}" if row["applied_at"] else ""
            info(f"  {row['state']:<11} {row['version']}_{row['name']}{src}{when}")
        for problem in problems:
            warn(problem.message, problem.hint)
    if problems:
        raise typer.Exit(EXIT_FAILED)


@app.command("verify")
def verify_cmd(env: EnvOpt = None) -> None:
    """Check applied migrations against the files (checksums, vanished, order)."""
    from ..migrations import MigrationsBlocked, migration_status

    rows, problems = migration_status(resolve(env))
    if problems:
        raise MigrationsBlocked(problems)
    applied = sum(r["state"] == "applied" for r in rows)
    ok(f"{applied} applied migration(s) match their files; {len(rows) - applied} pending")


@app.command("repair")
def repair_cmd(
    migration: Annotated[
        str | None,
        typer.Argument(help="Only this migration (version or version_name); default: all."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really change the history.")] = False,
    interrupted: Annotated[
        str | None,
        typer.Option("--interrupted", help="Outcome of an interrupted run: applied|pending."),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")] = "",
    env: EnvOpt = None,
    confirm: ConfirmOpt = False,
) -> None:
    """Accept edited files, forget vanished ones, settle interrupted runs (audited).

    `--interrupted applied` first checks the migration's effects are in the database
    (indexes valid, tables there...); what cannot be checked needs --reason."""
    from ..migrations import migration_runner

    target = resolve(env)
    guard(target, confirm, not yes, "repairing the migration history")
    runner = migration_runner(target, say=info)
    actions = runner.repair(apply=yes, interrupted=interrupted, reason=reason, only=migration)
    if not actions:
        ok("the history matches the files: nothing to repair")
        return
    for action in actions:
        info(f"  {'repaired' if yes else 'would'}: {action}")
    if yes:
        ok(
            f"repaired {len(actions)} entr{'y' if len(actions) == 1 else 'ies'}"
            " (see `nself db migrate log`)"
        )
    else:
        info("dry run: nothing changed; add --yes to apply")


@app.command("log")
def log_cmd(
    limit: Annotated[int, typer.Option("--limit")] = 30,
    env: EnvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log: every apply, revert and repair, with who did it."""
    from ..migrations import migration_runner

    rows = migration_runner(resolve(env)).log(limit)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        info(
            f"  {row['at']:%Y-%m-%d %H:%M:%S} {row['action']:<22}"
            f" {row['version']}_{row['name']}"
            f"  {row['who']}{'  ' + row['detail'] if row['detail'] else ''}"
        )
