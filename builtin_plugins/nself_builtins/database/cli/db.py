"""`nself db`: restore, shell, seed and reset, and the groups migrate, backup and pitr."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from nself_sdk import UsageError, require_yes
from nself_sdk.console import info, ok, warn

from . import backup, migrate, pitr, pool, replica
from .options import ConfirmOpt, DryRunOpt, EnvOpt, guard, resolve, size

if TYPE_CHECKING:
    from ..target import Target

HELP = (
    "Migrations, backups, restore, point-in-time recovery, seeds, shell; read replicas and "
    "the connection pool."
)
PANEL = "Database"

# Added without a name to the shared `db` group (`nself_sdk.commands.command_group`), so
# other plugins can add their own commands to `nself db`.
app = typer.Typer()


@app.command("restore")
def restore_cmd(
    name: Annotated[str, typer.Argument(help="Backup to restore (see `nself db backup list`).")],
    env: EnvOpt = None,
    confirm: ConfirmOpt = False,
    dry_run: DryRunOpt = False,
    no_safety_backup: Annotated[
        bool,
        typer.Option(
            "--no-safety-backup",
            help="Drop the current database after the swap instead of keeping it; it refuses"
            " connections (writes) from the start of the restore.",
        ),
    ] = False,
    from_other_project: Annotated[
        bool,
        typer.Option(
            "--from-other-project",
            help="Allow a backup of another project, cluster or database (it replaces yours).",
        ),
    ] = False,
) -> None:
    """Replace the database with a backup (checked first; the current one is kept)."""
    from ..backups import Store, check_integrity, restore

    target = resolve(env)
    guard(target, confirm, dry_run, "restoring")
    store = Store.for_project(target.project, target.config)
    resolved = store.resolve_name(name)
    manifest = check_integrity(store, resolved)
    if dry_run:
        for line in _restore_plan(target, resolved, manifest, no_safety_backup, from_other_project):
            info(line)
        return
    result = restore(
        target.transport(),
        store,
        resolved,
        safety_backup=not no_safety_backup,
        say=info,
        project=target.config.project_name,
        other_project=from_other_project,
    )
    _say_restored(resolved, result)


def _restore_plan(
    target: Target, resolved: str, manifest: dict[str, Any], drop: bool, other_project: bool
) -> list[str]:
    """What a restore would do (its dry run): the backup's origin is checked as a run would."""
    from ..backups import origin

    transport = target.transport()
    with transport.connect(dbname="postgres", autocommit=True) as conn:  # refused as a run
        elsewhere = origin(
            conn, manifest, resolved, target.config.project_name, transport.dbname, other_project
        )
    return [
        f"would restore {resolved} ({size(manifest['size'])}, taken {manifest['created'][:19]})"
        + (f" from elsewhere ({elsewhere})" if elsewhere else ""),
        "  into a new database, then swap: the current one is "
        + ("dropped (it refuses connections from the start)" if drop else "kept under another name")
        + "; dry run: nothing changed",
    ]


def _say_restored(resolved: str, result: dict[str, Any]) -> None:
    ok(f"restored {resolved} into {result['database']}")
    if result.get("origin"):
        info(f"  it came from elsewhere: {result['origin']}")
    if result.get("previous"):
        info(
            f"  the previous database, with every write it took until the swap, is kept as"
            f" {result['previous']} (`nself db backup prune --yes` drops it)"
        )
    elif result.get("previous_dropped"):
        info("  the previous database was dropped (--no-safety-backup)")
    if result.get("settings_left_out"):
        warn(
            "settings of the database this role may not set were left out of the restored"
            " one: " + "; ".join(result["settings_left_out"]),
            "a superuser can set them again (ALTER DATABASE / ALTER ROLE ... IN DATABASE)",
        )


@app.command("shell")
def shell_cmd(env: EnvOpt = None) -> None:
    """Open psql on the database (inside the postgres service for the local stack)."""
    raise typer.Exit(resolve(env).transport().interactive("psql", []))


@app.command("seed")
def seed_cmd(env: EnvOpt = None, confirm: ConfirmOpt = False, dry_run: DryRunOpt = False) -> None:
    """Run seeds/*.sql in name order (prod: only files marked `-- nself:prod-safe`)."""
    from ..seeds import run_seeds

    target = resolve(env)
    guard(target, confirm, dry_run, "seeding")
    done = run_seeds(target, dry_run=dry_run, say=info)
    verb = "would run" if dry_run else "ran"
    ok(f"{verb} {len(done)} seed file(s) on {target.env}")


@app.command("reset")
def reset_cmd(
    env: EnvOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    seed: Annotated[bool, typer.Option("--seed/--no-seed", help="Run seeds afterwards.")] = True,
) -> None:
    """Drop and recreate the dev database, then migrate (and seed). Dev only."""
    from ..migrations import migration_runner
    from ..seeds import reset, run_seeds

    target = resolve(env)
    if target.env != "dev":
        raise UsageError(
            f"`nself db reset` only works on the local dev database, not {target.env}",
            "use `nself db restore` to replace a staging or production database",
        )
    database = target.config.text("POSTGRES_DB", "nself")
    require_yes(
        f"Drop every table of {database} and start over?",
        yes,
        needs=f"resetting {database} (every table is dropped) needs confirmation",
    )
    reset(target.transport(), target.project / "postgres" / "init")
    outcome = migration_runner(target, say=info).up()
    info(f"  applied {len(outcome.applied)} migration(s)")
    if seed:
        run_seeds(target, dry_run=False, say=info)
    ok("the dev database was reset")


app.add_typer(migrate.app, name="migrate")
app.add_typer(backup.app, name="backup")
app.add_typer(pitr.app, name="pitr")
app.add_typer(replica.app, name="replica")
app.add_typer(pool.app, name="pool")
