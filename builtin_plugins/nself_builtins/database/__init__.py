"""The database lifecycle: migrations, verified backups, restore, PITR, seeds and shell;
read replicas (``replicas``) and the connection pool's status (``pool``).

Commands live under ``nself db`` (``cli/``: one Typer app per command group). The engine
modules (``migrations``, ``backups``, ``pitr``) talk to PostgreSQL only through a
``Transport`` (``transport.py``), so the same code runs against the local stack (tools
inside the postgres service) and against any server reachable directly (tests, CI,
``NSELF_DB_URL``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

from nself_sdk import Config, Finding, GeneratedFile, Problem, Service, Setting, Stack, hookimpl

if TYPE_CHECKING:
    from typer import Typer

    from nself_sdk import Runtime


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting("BACKUP_SCHEDULE", "", "Cron schedule of automatic backups (UTC), e.g. 0 2 * * *."),
        Setting(
            "BACKUP_RETENTION_DAYS", "30", "Days backups are kept (the newest verified stays)."
        ),
        Setting("BACKUP_S3_BUCKET", "", "S3 bucket that receives a copy of every backup."),
        Setting(
            "BACKUP_S3_ENDPOINT", "", "S3 endpoint URL (empty: AWS; the project's MinIO works)."
        ),
        Setting("BACKUP_S3_REGION", "us-east-1", "S3 region."),
        Setting("BACKUP_S3_ACCESS_KEY", "", "S3 access key id."),
        Setting("BACKUP_S3_SECRET_KEY", "", "S3 secret access key.", secret=True),
        Setting("BACKUP_DIR", "backups", "Folder of the project that holds backups."),
        Setting("BACKUP_PRUNE", "false", "Let scheduled retention delete (else it only logs)."),
        Setting(
            "PITR_RETENTION_DAYS",
            "7",
            "Point-in-time recovery window to keep, in days (`nself db pitr prune`).",
        ),
    ]


MIGRATIONS_README = """\
Schema migrations, applied in version order by `nself db migrate up`:
<version>_<name>/up.sql and down.sql (`nself db migrate create NAME` starts one).
An applied up.sql must not change afterwards: nself checks its checksum.
"""
SEEDS_README = """\
Seed data: `nself db seed` runs seeds/*.sql in name order, each in a transaction.
In production only files marked `-- nself:prod-safe` run.
"""


@hookimpl
def contribute_scaffold() -> list[GeneratedFile]:
    from .backups import GITIGNORE

    return [
        GeneratedFile("migrations/README", MIGRATIONS_README),
        GeneratedFile("seeds/README", SEEDS_README),
        GeneratedFile("backups/.gitignore", GITIGNORE),  # the default BACKUP_DIR
    ]


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    from .schedule import validate

    return validate(config)


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    from .schedule import services

    return services(config)


@hookimpl
def contribute_files(config: Config, stack: Stack) -> list[GeneratedFile]:
    from .schedule import files

    return files(config, stack)


@hookimpl(wrapper=True)
def contribute_env(config: Config) -> Generator[None, list[dict[str, str]], list[dict[str, str]]]:
    """DATABASE_POOL_URL: the PgBouncer plugin's pool when it is installed (a wrapper: its
    host and port are what that plugin derives), the database itself otherwise."""
    answers = yield
    from .pool import pool_url

    derived = {key: value for answer in answers for key, value in answer.items()}
    return [*answers, {"DATABASE_POOL_URL": pool_url(config, derived)}]


@hookimpl
def stack_started(config: Config, stack: Stack, runtime: Runtime, services: list[str]) -> None:
    """A primary started with replicas configured lets them in (a project whose
    POSTGRES_REPLICAS came from someone else's env file, on a primary with data)."""
    if "postgres" not in services:
        return
    from nself_builtins.shared.replicas import names

    if not names(config):
        return
    from nself_sdk import NselfError
    from nself_sdk.console import info, warn

    from .replicas import prepare_primary
    from .target import Target

    try:
        target = Target(config.project_dir, config, config.env, stack)
        for note in prepare_primary(target.transport(), config.text("POSTGRES_PASSWORD")):
            info(f"primary: {note} (the replicas retry on their own)")
    except NselfError as exc:
        warn(f"the replicas may not reach the primary: {exc.message}")


@hookimpl
def drop_plugin_database(config: Config, plugin: str, role: str, schema: str) -> list[str]:
    """A removed bundle's schema, what its role owns, its history and the role."""
    from .plugin_data import drop

    return drop(config, plugin, role, schema)


@hookimpl
def register_commands(app: Typer) -> None:
    from nself_sdk.commands import command_group

    from .cli import HELP, PANEL
    from .cli import app as db

    command_group(app, "db", HELP, panel=PANEL).add_typer(db)


@hookimpl
def diagnose(config: Config, stack: Stack, deep: bool, only: list[str]) -> list[Finding]:
    """``interrupted``: a restore a crash cut short is finished or undone now;
    ``migrations``: pending or changed ones; ``backups``: the newest is intact, recent
    (with a schedule) and proven by a restore (``deep`` runs that restore);
    ``replication``: each replica streams, and no slot holds WAL for nobody."""
    from .checks import findings
    from .replica_checks import replication

    found = findings(config, stack, deep, only)
    if not only or "replication" in only:
        found += replication(config, stack)
    return found


@hookimpl
def harden(config: Config, stack: Stack, live: bool) -> list[Finding]:
    """``tenancy`` / ``rls`` from the migrations; ``backup-schedule``, ``offsite``,
    ``backup-files``; live: ``backups`` (recent, restored), ``wal`` (prod), ``migration-log``."""
    from .hardening import findings

    return findings(config, stack, live)
