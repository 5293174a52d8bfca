"""`nself db ...`: the Typer commands. Engines are imported inside each command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nself_sdk import NselfError, UsageError
from nself_sdk.console import emit_json, info, ok, warn

if TYPE_CHECKING:
    from .target import Target


# `nself db` is registered on every start-up: the target/transport machinery is imported
# only when a db command runs.
def resolve(env: str | None) -> Target:
    from .target import resolve as resolve_target

    return resolve_target(env)


def guard(target: Target, confirm: bool, dry_run: bool, action: str) -> None:
    from .target import guard as guard_target

    guard_target(target, confirm, dry_run, action)


EnvOpt = Annotated[str | None, typer.Option("--env", help="local, staging or prod.")]
ConfirmOpt = Annotated[bool, typer.Option("--confirm", help="Required for production changes.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
LockOpt = Annotated[
    float, typer.Option("--lock-timeout", help="Seconds to wait for another run's lock.")
]


def _runner(target: Target, lock_timeout: float = 60.0) -> Any:
    from nself_sdk import plugin_manager

    from .migrations import Runner, plugin_migrations, project_migrations

    contributed = [
        m
        for answer in plugin_manager(target.project).hook.contribute_migrations(
            config=target.config
        )
        for m in answer or ()
    ]
    items = project_migrations(target.project) + plugin_migrations(contributed)
    return Runner(target.transport(), items, lock_timeout=lock_timeout, say=info)


def _migrate_app() -> typer.Typer:
    app = typer.Typer(help="Checksummed schema migrations.", no_args_is_help=True)

    @app.command("create")
    def create_cmd(
        name: Annotated[str, typer.Argument(help="What it does, e.g. add_users.")],
    ) -> None:
        """Create migrations/<version>_<name>/ with an up.sql and a down.sql."""
        from nself_sdk import find_project

        from .migrations import create

        project = find_project()
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
        target = resolve(env)
        guard(target, confirm, dry_run, "migrating")
        if dry_run:
            _dry_run_up(target, to)
            return
        outcome = _runner(target, lock_timeout).up(to)
        if outcome.applied:
            ok(f"applied {len(outcome.applied)} migration(s) to {target.env}")
        else:
            ok(f"the {target.env} database is up to date")

    @app.command("down")
    def down_cmd(
        steps: Annotated[int, typer.Option("--steps", help="How many to revert.")] = 1,
        env: EnvOpt = None,
        confirm: ConfirmOpt = False,
        dry_run: DryRunOpt = False,
        lock_timeout: LockOpt = 60.0,
    ) -> None:
        """Revert the newest applied migrations with their down.sql."""
        target = resolve(env)
        guard(target, confirm, dry_run, "reverting migrations")
        runner = _runner(target, lock_timeout)
        if dry_run:
            rows, problems = runner.status()
            if problems:
                from .migrations import MigrationsBlocked

                raise MigrationsBlocked(problems)
            applied = [r for r in rows if r["state"] == "applied"]
            applied.sort(key=lambda r: r["applied_at"] or "", reverse=True)
            for row in applied[:steps]:
                info(f"would revert {row['version']}_{row['name']}")
            return
        outcome = runner.down(steps)
        ok(f"reverted {len(outcome.reverted)} migration(s)")

    @app.command("status")
    def status_cmd(env: EnvOpt = None, as_json: JsonOpt = False) -> None:
        """Show every migration: applied, pending, changed, missing or interrupted."""
        target = resolve(env)
        rows, problems = _runner(target).status()
        if as_json:
            emit_json(
                {"env": target.env, "migrations": rows, "problems": [p.message for p in problems]}
            )
        else:
            if not rows:
                info("no migrations yet (create one with `nself db migrate create NAME`)")
            for row in rows:
                src = "" if row["source"] == "project" else f" [{row['source']}]"
                when = (
                    f"  {row['applied_at'][:19]} by {row['applied_by']}"
                    if row["applied_at"]
                    else ""
                )
                info(f"  {row['state']:<11} {row['version']}_{row['name']}{src}{when}")
            for problem in problems:
                warn(problem.message, problem.hint)
        if problems:
            raise typer.Exit(1)

    @app.command("verify")
    def verify_cmd(env: EnvOpt = None) -> None:
        """Check applied migrations against the files (checksums, vanished, order)."""
        from .migrations import MigrationsBlocked

        target = resolve(env)
        rows, problems = _runner(target).status()
        if problems:
            raise MigrationsBlocked(problems)
        applied = sum(r["state"] == "applied" for r in rows)
        ok(f"{applied} applied migration(s) match their files; {len(rows) - applied} pending")

    @app.command("repair")
    def repair_cmd(
        yes: Annotated[bool, typer.Option("--yes", help="Really change the history.")] = False,
        interrupted: Annotated[
            str | None,
            typer.Option("--interrupted", help="Outcome of an interrupted run: applied|pending."),
        ] = None,
        reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")] = "",
        env: EnvOpt = None,
        confirm: ConfirmOpt = False,
    ) -> None:
        """Accept edited files, forget vanished ones, settle interrupted runs (audited)."""
        target = resolve(env)
        guard(target, confirm, not yes, "repairing the migration history")
        actions = _runner(target).repair(apply=yes, interrupted=interrupted, reason=reason)
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
        target = resolve(env)
        rows = _runner(target).log(limit)
        if as_json:
            emit_json(rows)
            return
        for row in rows:
            info(
                f"  {row['at']:%Y-%m-%d %H:%M:%S} {row['action']:<22}"
                f" {row['version']}_{row['name']}"
                f"  {row['who']}{'  ' + row['detail'] if row['detail'] else ''}"
            )

    return app


def _dry_run_up(target: Target, to: str | None) -> None:
    try:
        runner = _runner(target)
    except NselfError as exc:
        if "not available yet" not in exc.message:
            raise
        from nself_sdk import plugin_manager

        from .migrations import ordered, plugin_migrations, project_migrations

        contributed = [
            m
            for answer in plugin_manager(target.project).hook.contribute_migrations(
                config=target.config
            )
            for m in answer or ()
        ]
        items = ordered(project_migrations(target.project) + plugin_migrations(contributed))
        warn(
            f"cannot read the {target.env} history yet ({exc.message}); "
            "listing every migration the project has"
        )
        for item in items:
            info(f"  would apply (if not applied): {item.label}  sha256 {item.sha256[:12]}")
        return
    pending = runner.pending(to)
    if not pending:
        ok(f"dry run: the {target.env} database is up to date")
        return
    for item in pending:
        extra = "" if item.transactional else " (no transaction)"
        info(f"  would apply {item.label}{extra}  sha256 {item.sha256[:12]}")
    info(f"dry run: {len(pending)} migration(s) would run; nothing changed")


def _backup_app() -> typer.Typer:
    app = typer.Typer(help="Verified backups.", invoke_without_command=True)

    @app.callback()
    def backup_cmd(
        ctx: typer.Context,
        label: Annotated[
            str | None, typer.Option("--label", help="A name to remember it by.")
        ] = None,
        env: EnvOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Take a backup (custom-format pg_dump plus roles, hashed, with a manifest)."""
        if ctx.invoked_subcommand is not None:
            return
        from .backups import Store, take

        target = resolve(env)
        store = Store.for_project(target.project, target.config)
        manifest = take(target.transport(), store, label=label, say=info)
        if as_json:
            emit_json(manifest)
        else:
            ok(
                f"backup {manifest['name']} ({_size(manifest['size'])},"
                f" sha256 {manifest['sha256'][:12]})"
            )
            info(
                "  it is not verified yet: `nself db backup verify` restores it into a scratch"
                " database"
            )

    @app.command("list")
    def list_cmd(as_json: JsonOpt = False, env: EnvOpt = None) -> None:
        """List backups, newest first; never-verified ones are marked."""
        from .backups import Store

        target = resolve(env)
        store = Store.for_project(target.project, target.config)
        rows = store.listing()
        if as_json:
            emit_json(rows)
            return
        if not rows:
            info("no backups yet (`nself db backup`)")
        for row in rows:
            state = row["verified"] or "NEVER VERIFIED"
            info(f"  {row['name']:<48} {_size(row['size']):>9}  {row['created'][:19]}  {state}")

    @app.command("verify")
    def verify_cmd(
        name: Annotated[str | None, typer.Argument(help="Backup name (default: newest).")] = None,
        all_: Annotated[bool, typer.Option("--all", help="Verify every backup.")] = False,
        env: EnvOpt = None,
    ) -> None:
        """Check the hash, restore into a scratch database, compare rows and schema."""
        from .backups import Store, verify

        target = resolve(env)
        store = Store.for_project(target.project, target.config)
        names = [r["name"] for r in store.listing()] if all_ else [store.resolve_name(name)]
        if not names:
            raise NselfError("there are no backups to verify", "take one with `nself db backup`")
        failed = 0
        transport = target.transport()
        for each in names:
            try:
                report = verify(transport, store, each, say=info)
                ok(f"{each}: verified ({report['tables']} tables, {report['rows']} rows match)")
            except NselfError as exc:
                failed += 1
                warn(f"{each}: {exc.message}", exc.hint)
        if failed:
            raise NselfError(f"{failed} of {len(names)} backup(s) failed verification")

    @app.command("push")
    def push_cmd(
        name: Annotated[str | None, typer.Argument(help="Backup name (default: newest).")] = None,
        all_: Annotated[bool, typer.Option("--all", help="Push every backup.")] = False,
        env: EnvOpt = None,
    ) -> None:
        """Copy backups to S3 (BACKUP_S3_BUCKET; MinIO or any S3), checked after upload."""
        from .backups import Store
        from .offsite import Bucket, push

        target = resolve(env)
        store = Store.for_project(target.project, target.config)
        bucket = Bucket.from_config(target.config)
        names = [r["name"] for r in store.listing()] if all_ else [store.resolve_name(name)]
        for each in names:
            keys = push(store, each, bucket)
            ok(f"{each}: {len(keys)} files in s3://{bucket.name}/{bucket.prefix}/")

    @app.command("pull")
    def pull_cmd(
        name: Annotated[
            str | None, typer.Argument(help="Backup name (default: list them).")
        ] = None,
        env: EnvOpt = None,
    ) -> None:
        """Download a backup from S3 into the backup folder (checked like a restore)."""
        from .backups import Store
        from .offsite import Bucket, pull, remote_names

        target = resolve(env)
        store = Store.for_project(target.project, target.config)
        bucket = Bucket.from_config(target.config)
        if name is None:
            for each in remote_names(bucket):
                info(f"  {each}")
            return
        manifest = pull(store, name, bucket)
        ok(f"downloaded {name} ({_size(manifest['size'])})")
        info(f"  restore it with `nself db restore {name}`")

    @app.command("prune")
    def prune_cmd(
        yes: Annotated[bool, typer.Option("--yes", help="Really delete.")] = False,
        days: Annotated[
            int | None, typer.Option("--days", help="Override BACKUP_RETENTION_DAYS.")
        ] = None,
        env: EnvOpt = None,
    ) -> None:
        """Apply BACKUP_RETENTION_DAYS (dry run unless --yes; keeps the newest verified)."""
        from .backups import Store, prune

        target = resolve(env)
        store = Store.for_project(target.project, target.config)
        keep_days = days if days is not None else target.config.int("BACKUP_RETENTION_DAYS", 30)
        doomed, kept_reason = prune(store, keep_days, apply=yes)
        for name in doomed:
            info(f"  {'deleted' if yes else 'would delete'} {name}")
        for name, why in kept_reason.items():
            info(f"  keep {name}: {why}")
        if not yes:
            info("dry run: nothing deleted; add --yes to delete")

    return app


def _pitr_app() -> typer.Typer:
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
        from .pitr import fmt, parse_target, pitr_for_target

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
        if not yes and not typer.confirm("Stop the database and recover to this point?"):
            raise NselfError("cancelled; nothing changed")
        aside = engine.recover(plan, say=info)
        ok(f"recovered to {fmt(when)}; the previous data folder is kept at {aside}")

    @app.command("enable")
    def enable_cmd(env: EnvOpt = None, confirm: ConfirmOpt = False) -> None:
        """Turn continuous WAL archiving on (restarts PostgreSQL if needed) and prove it."""
        from .pitr import pitr_for_target

        target = resolve(env)
        guard(target, confirm, False, "turning WAL archiving on")
        engine = pitr_for_target(target)
        restarted = engine.enable(say=info)
        ok(
            "WAL archiving is on and a segment reached the archive"
            + (" (restarted)" if restarted else "")
        )
        info("  next: `nself db pitr backup` takes the base backup recoveries start from")

    @app.command("backup")
    def base_cmd(env: EnvOpt = None) -> None:
        """Take a base backup (the starting point of every recovery)."""
        from .pitr import pitr_for_target

        target = resolve(env)
        manifest = pitr_for_target(target).base_backup(say=info)
        ok(f"base backup {manifest['name']} ({_size(manifest['size'])})")

    @app.command("status")
    def status_cmd(env: EnvOpt = None, as_json: JsonOpt = False) -> None:
        """Show base backups, archived WAL, the recoverable window and retention."""
        from .pitr import fmt, pitr_for_target
        from .retention import configured_days, plan_prune, size_text

        target = resolve(env)
        days = configured_days(target.config)
        engine = pitr_for_target(target)
        bases = engine.base_backups()
        newest = engine.newest_point()
        retention: dict[str, Any] = {"days": days}
        try:
            plan = plan_prune(engine, days)
        except NselfError as exc:
            retention["prune"] = None
            retention["note"] = exc.message
        else:
            retention["prune"] = plan.to_json()
        data = {
            "base_backups": bases,
            "earliest": bases[0]["end"] if bases else None,
            "newest": newest.isoformat() if newest else None,
            "retention": retention,
        }
        if as_json:
            emit_json(data)
            return
        info(f"  base backups: {len(bases)}")
        if bases and newest:
            info(f"  recoverable window: {bases[0]['end'][:19]} UTC .. {fmt(newest)}")
        else:
            info("  nothing is recoverable yet (`nself db pitr backup`)")
        info(f"  retention: PITR_RETENTION_DAYS={days}")
        if retention["prune"] is None:
            info(f"  prune: nothing to do ({retention['note']})")
        else:
            prune = plan
            info(
                f"  `nself db pitr prune --yes` would delete {len(prune.drop)} base backup(s)"
                f" and {len(prune.wal)} WAL file(s), freeing {size_text(prune.freed)}"
            )

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

        from .pitr import pitr_for_target
        from .retention import apply_prune, check_days, configured_days, plan_prune

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
            target.config,
            "delete-data",
            confirm,
            detail="deletes PITR base backups and WAL",
        )
        apply_prune(engine, plan)
        if as_json:
            emit_json(plan.to_json())
            return
        for line in plan.describe():
            info(line)
        ok(
            f"deleted {len(plan.drop)} base backup(s) and {len(plan.wal)} WAL file(s);"
            f" every point from {_when(plan.earliest_after)} stays recoverable"
        )

    return app


def _when(iso: str) -> str:
    from .retention import _when as when

    return when(iso)


def _size(n: int) -> str:
    from .retention import size_text

    return size_text(n)


def db_app() -> typer.Typer:
    app = typer.Typer(
        help="Migrations, backups, restore, point-in-time recovery, seeds, shell.",
        no_args_is_help=True,
    )
    app.add_typer(_migrate_app(), name="migrate")
    app.add_typer(_backup_app(), name="backup")
    app.add_typer(_pitr_app(), name="pitr")

    @app.command("restore")
    def restore_cmd(
        name: Annotated[
            str, typer.Argument(help="Backup to restore (see `nself db backup list`).")
        ],
        env: EnvOpt = None,
        confirm: ConfirmOpt = False,
        dry_run: DryRunOpt = False,
        no_safety_backup: Annotated[
            bool, typer.Option("--no-safety-backup", help="Skip the backup of the current data.")
        ] = False,
    ) -> None:
        """Replace the database with a backup (checked first; a safety backup is taken)."""
        from .backups import Store, check_integrity, restore

        target = resolve(env)
        guard(target, confirm, dry_run, "restoring")
        store = Store.for_project(target.project, target.config)
        resolved = store.resolve_name(name)
        manifest = check_integrity(store, resolved)
        if dry_run:
            info(
                f"would restore {resolved} ({_size(manifest['size'])},"
                f" taken {manifest['created'][:19]})"
            )
            info("  after a safety backup of the current database; dry run: nothing changed")
            return
        result = restore(
            target.transport(), store, resolved, safety_backup=not no_safety_backup, say=info
        )
        ok(f"restored {resolved} into {result['database']}")
        if result.get("safety_backup"):
            info(f"  the previous data is in backup {result['safety_backup']}")

    @app.command("shell")
    def shell_cmd(env: EnvOpt = None) -> None:
        """Open psql on the database (inside the postgres service for the local stack)."""
        target = resolve(env)
        raise typer.Exit(target.transport().interactive("psql", []))

    @app.command("seed")
    def seed_cmd(
        env: EnvOpt = None,
        confirm: ConfirmOpt = False,
        dry_run: DryRunOpt = False,
    ) -> None:
        """Run seeds/*.sql in name order (prod: only files marked `-- nself:prod-safe`)."""
        from .seeds import run_seeds

        target = resolve(env)
        guard(target, confirm, dry_run, "seeding")
        done = run_seeds(target, dry_run=dry_run, say=info)
        verb = "would run" if dry_run else "ran"
        ok(f"{verb} {len(done)} seed file(s) on {target.env}")

    @app.command("reset")
    def reset_cmd(
        env: EnvOpt = None,
        yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
        seed: Annotated[
            bool, typer.Option("--seed/--no-seed", help="Run seeds afterwards.")
        ] = True,
    ) -> None:
        """Drop and recreate the dev database, then migrate (and seed). Dev only."""
        from .seeds import reset, run_seeds

        target = resolve(env)
        if target.env != "dev":
            raise UsageError(
                f"`nself db reset` only works on the local dev database, not {target.env}",
                "use `nself db restore` to replace a staging or production database",
            )
        if not yes and not typer.confirm(
            f"Drop every table of {target.config.text('POSTGRES_DB', 'nself')} and start over?"
        ):
            raise NselfError("cancelled; nothing changed")
        reset(target.transport(), target.project / "postgres" / "init")
        outcome = _runner(target).up()
        info(f"  applied {len(outcome.applied)} migration(s)")
        if seed:
            run_seeds(target, dry_run=False, say=info)
        ok("the dev database was reset")

    return app


__all__ = ["Path", "db_app"]
