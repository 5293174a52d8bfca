"""The database's part of the hardening suite.

Authorization: the two tenancy conventions in the schema the migrations build (read with
PostgreSQL's own parser) and row level security where the project uses it. Data: backups
(scheduled, off the server, over TLS, recent, proven by a restore), WAL archiving in
production, backup files private. Audit: the migration audit log.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from nself_sdk import Config, Finding, NselfError, Stack

TENANT = "tenant_id"
APP = "source_account_id"
APP_DEFAULT = "primary"
# The conventions and row level security are the tables' (a view shows its tables' columns).
TABLES = ("table",)


def findings(config: Config, stack: Stack, live: bool) -> list[Finding]:
    from nself_builtins.shared.schema import plugin_sources, project_sources, read

    schema = read(plugin_sources(stack.migrations) + project_sources(config.project_dir))
    found = conventions(schema) + rls(config, schema) + backup_settings(config, stack)
    found += backup_files(config)
    if live:
        found += backups(config)
        found += database(config, schema)
    return found


# -- authorization ------------------------------------------------------------------------------
def conventions(schema: Any) -> list[Finding]:
    """``tenant_id UUID`` (nullable) separates customers; ``source_account_id TEXT NOT NULL
    DEFAULT 'primary'`` separates apps. A column shaped like the other convention is how a
    filter ends up on the wrong one."""
    found = [
        Finding(
            "conventions",
            "warning",
            f"{where}: not checked, {why}",
            "fix the SQL: the tables it creates are unknown to the tenancy wall",
            layer="authorization",
        )
        for where, why in schema.unreadable
    ]
    for table in schema.with_column(TENANT, TABLES):
        column = table.columns[TENANT]
        if column.type != "uuid":
            found.append(
                Finding(
                    "conventions",
                    "error",
                    f"{table.where}: {table.qualified}.tenant_id is {column.describe()}; "
                    "tenant_id is UUID (nullable): "
                    + (
                        "this is the source_account_id convention under the other's name"
                        if column.default_text == APP_DEFAULT
                        else "another type mixes the conventions"
                    ),
                    f"ALTER TABLE {table.qualified} ALTER COLUMN tenant_id TYPE uuid USING "
                    "tenant_id::uuid (apps are separated by source_account_id)",
                    layer="authorization",
                )
            )
        elif column.default_text is not None:
            found.append(
                Finding(
                    "conventions",
                    "error",
                    f"{table.where}: {table.qualified}.tenant_id defaults to "
                    f"'{column.default_text}': every row written without one lands in that tenant",
                    f"ALTER TABLE {table.qualified} ALTER COLUMN tenant_id DROP DEFAULT",
                    layer="authorization",
                )
            )
    for table in schema.with_column(APP, TABLES):
        column = table.columns[APP]
        wrong = []
        if column.type != "text":
            wrong.append(f"type {column.type}")
        if not column.not_null:
            wrong.append("nullable")
        if column.default_text != APP_DEFAULT:
            wrong.append(f"default {column.default or 'none'}")
        if wrong:
            found.append(
                Finding(
                    "conventions",
                    "error",
                    f"{table.where}: {table.qualified}.source_account_id is {column.describe()} "
                    f"({', '.join(wrong)}); the convention is TEXT NOT NULL DEFAULT 'primary'",
                    f"ALTER TABLE {table.qualified} ALTER COLUMN source_account_id TYPE text, "
                    "ALTER COLUMN source_account_id SET DEFAULT 'primary', ALTER COLUMN "
                    "source_account_id SET NOT NULL",
                    layer="authorization",
                )
            )
    if not found:
        tenants = len(schema.with_column(TENANT, TABLES))
        apps = len(schema.with_column(APP, TABLES))
        found.append(
            Finding(
                "conventions",
                "ok",
                f"{tenants} table(s) with tenant_id UUID, {apps} with source_account_id TEXT NOT "
                "NULL DEFAULT 'primary'",
                layer="authorization",
            )
        )
    return found


def rls(config: Config, schema: Any) -> list[Finding]:
    """Where the project uses row level security: on for every tenant table, with a policy on
    tenant_id; policies only where it is on."""
    if not schema.uses_rls:
        return [
            Finding(
                "rls",
                "ok",
                "the migrations use no row level security: Hasura's permissions are the wall",
                layer="authorization",
            )
        ]
    found = []
    for _key, table in sorted(schema.tables.items()):
        if table.kind not in TABLES:
            continue
        if table.policies and not table.rls:
            found.append(
                Finding(
                    "rls",
                    "error",
                    f"{table.where}: {table.qualified} has policies "
                    f"({', '.join(p.name for p in table.policies)}) but row level security is "
                    "off: they do nothing",
                    f"ALTER TABLE {table.qualified} ENABLE ROW LEVEL SECURITY",
                    layer="authorization",
                )
            )
        elif TENANT in table.columns and not table.rls:
            found.append(
                Finding(
                    "rls",
                    "error",
                    f"{table.where}: {table.qualified} has tenant_id but no row level security, "
                    "while the project's other tables use it",
                    f"ALTER TABLE {table.qualified} ENABLE ROW LEVEL SECURITY, and a policy on "
                    "tenant_id",
                    layer="authorization",
                )
            )
        elif (
            TENANT in table.columns
            and table.rls
            and not any(TENANT in p.columns for p in table.policies)
        ):
            found.append(
                Finding(
                    "rls",
                    "warning",
                    f"{table.where}: {table.qualified} has row level security but no policy "
                    "on tenant_id",
                    f"CREATE POLICY tenant_isolation ON {table.qualified} USING (tenant_id = ...)",
                    layer="authorization",
                )
            )
    user = config.text("POSTGRES_USER", "postgres")
    found.append(
        Finding(
            "rls",
            "warning",
            f"Hasura connects as {user}, the database's superuser, which row level security "
            "never restricts: the policies protect other connections only",
            "rely on Hasura's permissions (the tenancy wall) for API traffic",
            layer="authorization",
        )
    )
    return found


# -- data ---------------------------------------------------------------------------------------
def backup_settings(config: Config, stack: Stack) -> list[Finding]:
    found = []
    if not config.is_local:
        schedule = config.text("BACKUP_SCHEDULE")
        found.append(
            Finding(
                "backup-schedule",
                "ok",
                f"backups run on schedule {schedule!r} (UTC)",
                layer="data",
            )
            if schedule
            else Finding(
                "backup-schedule",
                "warning",
                f"no automatic backups in {config.env}",
                'BACKUP_SCHEDULE="0 2 * * *" (daily, UTC) in .env.' + config.env,
                layer="data",
            )
        )
        if not config.text("BACKUP_S3_BUCKET"):
            found.append(
                Finding(
                    "offsite",
                    "warning",
                    "backups stay on the server they protect: losing it loses them",
                    "BACKUP_S3_BUCKET (and BACKUP_S3_ENDPOINT/ACCESS_KEY/SECRET_KEY) for a copy "
                    "elsewhere",
                    layer="data",
                )
            )
    endpoint = config.text("BACKUP_S3_ENDPOINT")
    if endpoint.startswith("http://"):
        from urllib.parse import urlsplit

        host = urlsplit(endpoint).hostname or ""
        if host not in {s.name for s in stack.services}:  # inside the stack's own network
            found.append(
                Finding(
                    "offsite",
                    "warning" if config.is_local else "error",
                    f"{config.where('BACKUP_S3_ENDPOINT')}: backups travel to {host} in plain HTTP",
                    "use the https:// endpoint",
                    layer="data",
                )
            )
    retention = config.int("BACKUP_RETENTION_DAYS", 30)
    if retention < 7:
        found.append(
            Finding(
                "backup-schedule",
                "warning",
                f"{config.where('BACKUP_RETENTION_DAYS')}: backups are kept {retention} days: a "
                "problem noticed a week later has no good backup left",
                "BACKUP_RETENTION_DAYS=30",
                layer="data",
            )
        )
    return found


def backup_files(config: Config) -> list[Finding]:
    from .backups import Store

    store = Store.for_project(config.project_dir, config)
    if not store.root.is_dir():
        return []
    files = [p for p in sorted(store.root.iterdir()) if p.name != ".gitignore"]
    if not files:
        return []
    loose = [
        p
        for p in [store.root, *files]
        if not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) & 0o077
    ]
    if not loose:
        return [
            Finding("backup-files", "ok", "backups are readable by their owner only", layer="data")
        ]
    rel = store.root.relative_to(config.project_dir).as_posix()

    def fix() -> str:
        for path in loose:
            path.chmod(0o700 if path.is_dir() else 0o600)
        return f"{len(loose)} path(s) in {rel}/ made private (0600 files, 0700 folders)"

    return [
        Finding(
            "backup-files",
            "error",
            f"{len(loose)} path(s) in {rel}/ are readable by other users (backups hold every row "
            "and role)",
            f"chmod -R go= {rel}",
            layer="data",
            fix=fix,
        )
    ]


def backups(config: Config) -> list[Finding]:
    """The newest backup: there, intact, recent, proven by a restore."""
    from .backups import Store, check_integrity
    from .checks import STALE_HOURS

    store = Store.for_project(config.project_dir, config)
    names = store.names()
    strict = not config.is_local
    if not names:
        scheduled = config.text("BACKUP_SCHEDULE")
        return [
            Finding(
                "backups",
                "error" if strict and not scheduled else "warning",
                f"no backup of the {config.env} database"
                + (f" yet (BACKUP_SCHEDULE {scheduled!r} takes the first)" if scheduled else ""),
                "nself db backup" + ("" if config.is_local else f" --env {config.env}"),
                layer="data",
                fix=_take(config),
            )
        ]
    newest = names[0]
    try:
        manifest = check_integrity(store, newest)
    except NselfError as exc:
        return [
            Finding(
                "backups",
                "error",
                f"newest backup {newest}: {exc.message}",
                exc.hint,
                layer="data",
                fix=_take(config),
            )
        ]
    hours = (datetime.now(UTC) - datetime.fromisoformat(str(manifest["created"]))).total_seconds()
    hours /= 3600
    if (strict or config.text("BACKUP_SCHEDULE")) and hours > STALE_HOURS:
        return [
            Finding(
                "backups",
                "error" if strict else "warning",
                f"the newest backup ({newest}) is {hours:.0f} hours old",
                "nself db backup; check BACKUP_SCHEDULE and `nself logs db-backup`",
                layer="data",
                fix=_take(config),
            )
        ]
    if not (store.verification(newest) or {}).get("ok"):
        return [
            Finding(
                "backups",
                "warning",
                f"the newest backup {newest} was never restored as a test",
                f"nself db backup verify {newest}",
                layer="data",
                fix=_verify(config, newest),
            )
        ]
    return [
        Finding(
            "backups",
            "ok",
            f"newest {newest}, {hours:.0f} h old, restored as a test",
            layer="data",
        )
    ]


def _target(config: Config) -> Any:
    from .target import Target

    return Target(config.project_dir, config, config.env)


def _take(config: Config) -> Callable[[], str]:
    def fix() -> str:
        from .backups import Store, take, verify

        store = Store.for_project(config.project_dir, config)
        transport = _target(config).transport()
        manifest = take(transport, store, label="harden")
        verify(transport, store, manifest["name"])
        return f"took backup {manifest['name']} and restored it as a test"

    return fix


def _verify(config: Config, name: str) -> Callable[[], str]:
    def fix() -> str:
        from .backups import Store, verify

        store = Store.for_project(config.project_dir, config)
        record = verify(_target(config).transport(), store, name)
        return f"restored {name} as a test: {record['tables']} tables, {record['rows']} rows match"

    return fix


def database(config: Config, schema: Any) -> list[Finding]:
    """What only the running database can tell: WAL archiving, the migration audit log,
    row level security as it is."""
    try:
        transport = _target(config).transport()
        with transport.connect() as conn:
            archive = str(conn.execute("SHOW archive_mode").fetchone()[0])
            tables = {
                str(r[0])
                for r in conn.execute(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'public' AND c.relname IN"
                    " ('np_schema_migrations', 'np_schema_migrations_log')"
                ).fetchall()
            }
            counts = (0, 0)
            guarded = True
            if len(tables) == 2:
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM public.np_schema_migrations),"
                    " (SELECT count(*) FROM public.np_schema_migrations_log),"
                    " EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'np_log_append_only'"
                    "   AND tgrelid = 'public.np_schema_migrations_log'::regclass"
                    "   AND tgenabled = 'A')"
                ).fetchone()
                counts, guarded = (int(row[0]), int(row[1])), bool(row[2])
            live_rls = conn.execute(
                "SELECT n.nspname || '.' || c.relname, c.relrowsecurity FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'"
                " AND NOT a.attisdropped WHERE c.relkind IN ('r', 'p')"
                " AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
            ).fetchall()
    except NselfError as exc:
        return [
            Finding(
                "database",
                "warning",
                f"not checked (WAL archiving, audit log, live RLS): {exc.message}",
                exc.hint,
                layer="data",
            )
        ]
    found = []
    if config.env == "prod" and archive not in ("on", "always"):
        found.append(
            Finding(
                "wal",
                "warning",
                "WAL archiving is off in prod: no point-in-time recovery, only the last backup",
                "nself db pitr enable --env prod (restarts PostgreSQL once)",
                layer="data",
            )
        )
    elif config.env == "prod":
        found.append(
            Finding("wal", "ok", "WAL archiving is on (point-in-time recovery)", layer="data")
        )
    if "np_schema_migrations" in tables and "np_schema_migrations_log" not in tables:
        found.append(
            Finding(
                "migration-log",
                "error",
                "migrations were applied but their audit log (np_schema_migrations_log) is gone",
                "restore it from a backup; the next `nself db migrate up` recreates an empty one",
                layer="audit",
            )
        )
    elif not guarded:
        found.append(
            Finding(
                "migration-log",
                "error",
                "the migration audit log's append-only guard (trigger np_log_append_only, "
                "enabled always) is gone or disabled: its entries can be changed",
                "nself db migrate up puts it back; find out who removed it (PostgreSQL's logs)",
                layer="audit",
            )
        )
    if "np_schema_migrations_log" in tables and counts[0] > counts[1]:
        found.append(
            Finding(
                "migration-log",
                "error",
                f"{counts[0]} migrations applied but {counts[1]} entries in their audit log: "
                "rows were deleted",
                "find out who changed np_schema_migrations_log (PostgreSQL's logs)",
                layer="audit",
            )
        )
    if not any(f.check == "migration-log" for f in found):
        found.append(
            Finding(
                "migration-log",
                "ok",
                f"every migration action is logged with who and when, append-only "
                f"({counts[1]} entries)",
                layer="audit",
            )
        )
    if schema.uses_rls:
        off = [name for name, on in live_rls if not on]
        if off:
            found.append(
                Finding(
                    "rls",
                    "error",
                    f"in the database, row level security is off on tenant tables: "
                    f"{', '.join(off)}",
                    "ENABLE ROW LEVEL SECURITY on them in a migration",
                    layer="authorization",
                )
            )
    return found
