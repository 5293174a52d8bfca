"""`nself db backup ...`: verified backups (engine: ``..backups``, ``..offsite``)."""

from __future__ import annotations

from typing import Annotated

import typer

from nself_sdk import NselfError
from nself_sdk.console import emit_json, info, ok, warn

from .options import ConfirmOpt, EnvOpt, JsonOpt, guard, resolve, size

app = typer.Typer(help="Verified backups.", invoke_without_command=True)


@app.callback()
def backup_cmd(
    ctx: typer.Context,
    label: Annotated[str | None, typer.Option("--label", help="A name to remember it by.")] = None,
    env: EnvOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Take a backup (custom-format pg_dump plus roles, hashed, with a manifest)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..backups import Store, take

    target = resolve(env)
    store = Store.for_project(target.project, target.config)
    manifest = take(
        target.transport(), store, label=label, say=info, project=target.config.project_name
    )
    if as_json:
        emit_json(manifest)
    else:
        digest = manifest["sha256"][:12]
        ok(f"backup {manifest['name']} ({size(manifest['size'])}, sha256 {digest})")
        info(
            "  it is not verified yet: `nself db backup verify` restores it into a scratch database"
        )


@app.command("list")
def list_cmd(as_json: JsonOpt = False, env: EnvOpt = None) -> None:
    """List backups, newest first; never-verified and failed ones are marked."""
    from ..backups import Store, kept_databases

    target = resolve(env)
    rows = Store.for_project(target.project, target.config).listing()
    if as_json:
        emit_json(rows)
        return
    if not rows:
        info("no backups yet (`nself db backup`)")
    for row in rows:
        state = row["verified"] or row.get("verify_failed") or "NEVER VERIFIED"
        info(f"  {row['name']:<48} {size(row['size']):>9}  {row['created'][:19]}  {state}")
    for db in kept_databases(target):
        info(
            f"  database {db.name} ({size(db.size)}): the data a restore replaced, kept"
            " until `nself db backup prune --yes`"
        )


@app.command("verify")
def verify_cmd(
    name: Annotated[str | None, typer.Argument(help="Backup name (default: newest).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Verify every backup.")] = False,
    env: EnvOpt = None,
) -> None:
    """Check the hash, restore into a scratch database, compare rows and schema."""
    from ..backups import Store, verify

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
    from ..backups import Store
    from ..offsite import Bucket, push

    target = resolve(env)
    store = Store.for_project(target.project, target.config)
    bucket = Bucket.from_config(target.config)
    names = [r["name"] for r in store.listing()] if all_ else [store.resolve_name(name)]
    for each in names:
        keys = push(store, each, bucket)
        ok(f"{each}: {len(keys)} files in s3://{bucket.name}/{bucket.prefix}/")


@app.command("pull")
def pull_cmd(
    name: Annotated[str | None, typer.Argument(help="Backup name (default: list them).")] = None,
    env: EnvOpt = None,
) -> None:
    """Download a backup from S3 into the backup folder (checked like a restore)."""
    from ..backups import Store
    from ..offsite import Bucket, pull, remote_names

    target = resolve(env)
    store = Store.for_project(target.project, target.config)
    bucket = Bucket.from_config(target.config)
    if name is None:
        for each in remote_names(bucket):
            info(f"  {each}")
        return
    manifest = pull(store, name, bucket)
    ok(f"downloaded {name} ({size(manifest['size'])})")
    info(f"  restore it with `nself db restore {name}`")


@app.command("prune")
def prune_cmd(
    yes: Annotated[bool, typer.Option("--yes", help="Really delete.")] = False,
    days: Annotated[
        int | None, typer.Option("--days", help="Override BACKUP_RETENTION_DAYS.")
    ] = None,
    env: EnvOpt = None,
    confirm: ConfirmOpt = False,
) -> None:
    """Apply BACKUP_RETENTION_DAYS (dry run unless --yes; keeps the newest verified); drop
    the databases restores kept and the temp files of interrupted runs."""
    from ..backups import Store, drop_kept, kept_databases, prune, staged_leftovers, unfinished
    from ..durable import leftovers

    target = resolve(env)
    store = Store.for_project(target.project, target.config)
    keep_days = days if days is not None else target.config.int("BACKUP_RETENTION_DAYS", 30)
    kept = kept_databases(target)
    if kept:
        guard(target, confirm, not yes, "dropping the databases restores kept")
    doomed, kept_reason = prune(store, keep_days, apply=yes)
    verb = "deleted" if yes else "would delete"
    for name in doomed:
        info(f"  {verb} {name}")
    for name, why in kept_reason.items():
        info(f"  keep {name}: {why}")
    half = unfinished(store)
    stale = half + [p for p in leftovers(store.root) if p not in half]
    for path in stale:
        info(f"  {verb} {path.name} ({size(path.stat().st_size)}), left by an interrupted run")
        if yes:
            path.unlink(missing_ok=True)
    for staged in staged_leftovers(target, apply=yes):
        info(f"  {verb} {staged} in the postgres service's /tmp, staged by an interrupted run")
    for db in kept:
        info(
            f"  {'dropped' if yes else 'would drop'} database {db.name} ({size(db.size)}),"
            " the data a restore replaced"
        )
    if yes and kept:
        drop_kept(target, [db.name for db in kept])
    if not yes:
        info("dry run: nothing deleted; add --yes to delete")
