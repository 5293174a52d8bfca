"""A bundle's migrations run as its own database role, and PostgreSQL refuses what that
role may not do (real PostgreSQL 15, see pg_cluster.py; docs/plugins/security.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import pg_cluster
from nself_builtins.plugins import install_folder
from pg_cluster import Cluster
from plugin_helpers import make_bundle

pytestmark = pytest.mark.postgres
pg, db = pg_cluster.pg, pg_cluster.db

CORE = """
CREATE TABLE public.customers (id int PRIMARY KEY, email text);
INSERT INTO public.customers VALUES (1, 'a@example.com');
"""
DATABASE = '[database]\nmigrations = "migrations"\n'


def snapshot(pg: Cluster, db: str) -> dict[str, Any]:
    """What exists outside the plugin's schema: roles, relations, functions, extensions,
    the core table's rows (the helper nself adds for plugins' history aside)."""
    return {
        "roles": pg.sql(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles"
            " WHERE rolname NOT LIKE 'nself_plugin_%' ORDER BY 1"
        ),
        "relations": pg.sql(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname NOT IN"
            " ('pg_catalog', 'information_schema', 'pg_toast', 'notes') ORDER BY 1, 2",
            db,
        ),
        "functions": pg.sql(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'public' AND p.proname <> 'np_plugin_migration' ORDER BY 1",
            db,
        ),
        "extensions": pg.sql("SELECT extname FROM pg_extension ORDER BY 1", db),
        "customers": pg.sql("SELECT * FROM public.customers ORDER BY 1", db),
    }


sandbox = pg_cluster.with_plugins(CORE)  # the project on db, its core tables made


def install(project: Path, tmp_path: Path, up: str, extra: str = "", name: str = "notes") -> None:
    folder = make_bundle(
        tmp_path / "src",
        name,
        extra=extra + DATABASE,
        service=False,
        files={"migrations/0001_init.up.sql": up},
    )
    install_folder(project, folder)


def migrate(nself: Any, project: Path) -> Any:
    assert nself("secrets", "generate", cwd=project).code == 0
    return nself("db", "migrate", "up", cwd=project)


def test_an_undeclared_extension_is_not_there_for_it(
    sandbox: Path, tmp_path: Path, nself: Any, pg: Cluster, db: str
) -> None:
    install(sandbox, tmp_path, "CREATE TABLE items (id int, note citext);")
    before = snapshot(pg, db)
    result = migrate(nself, sandbox)
    assert result.code == 1 and "plugin notes migration 0001_init failed" in result.err
    assert 'type "citext" does not exist' in result.err
    assert snapshot(pg, db) == before


def test_declared_extensions_and_own_schema(
    sandbox: Path, tmp_path: Path, nself: Any, pg: Cluster, db: str
) -> None:
    up = (
        "CREATE TABLE items (id bigserial PRIMARY KEY, body text, note citext);\n"
        "CREATE INDEX items_trgm ON items USING gin (body gin_trgm_ops);\n"
        "INSERT INTO items (body, note) VALUES ('hello', 'Hi');\n"
    )
    folder = make_bundle(
        tmp_path / "src",
        "notes",
        extra='[database]\nmigrations = "migrations"\nextensions = ["citext", "pg_trgm"]\n',
        service=False,
        files={
            "migrations/0001_init.up.sql": up,
            "migrations/0001_init.down.sql": "DROP TABLE items;",
        },
    )
    install_folder(sandbox, folder)
    result = migrate(nself, sandbox)
    assert result.code == 0, result.output
    owner = pg.sql("SELECT tableowner, schemaname FROM pg_tables WHERE tablename = 'items'", db)
    assert owner == [("nself_plugin_notes", "notes")]
    role = pg.sql(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
        " FROM pg_roles WHERE rolname = 'nself_plugin_notes'"
    )
    assert role == [(False, False, False, False, False)]
    recorded = pg.sql(
        "SELECT source, version, db_user FROM np_schema_migrations WHERE source = 'notes'", db
    )
    assert recorded == [("notes", "0001", "nself_plugin_notes")]
    # The URL the plugin's service gets logs in as its role: its table, no core table.
    env = dict(
        line.split("=", 1)
        for line in (sandbox / ".env.secrets").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    password = env["NOTES_DATABASE_PASSWORD"]
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=pg.port, user="nself_plugin_notes", password=password, dbname=db
    ) as conn:
        assert conn.execute("SELECT body FROM items").fetchall() == [("hello",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM public.customers")
    down = nself("db", "migrate", "down", cwd=sandbox)
    assert down.code == 0, down.output
    assert pg.sql("SELECT to_regclass('notes.items')", db) == [(None,)]


ATTACKS = {
    "copy-to-program": (
        "CREATE TABLE t (x int);\nCOPY (SELECT 1) TO PROGRAM 'touch /tmp/nself-sandbox-pwned';",
        "privileges of the pg_execute_server_program role",
    ),
    "create-superuser": ("CREATE ROLE evil SUPERUSER LOGIN PASSWORD 'x';", "must be superuser"),
    "create-role": ("CREATE ROLE evil LOGIN PASSWORD 'x';", "permission denied"),
    "table-outside-schema": ("CREATE TABLE public.evil (id int);", "permission denied"),
    "core-table-write": ("UPDATE public.customers SET email = 'evil@x';", "permission denied"),
    "core-table-drop": ("DROP TABLE public.customers;", "must be owner"),
    "extension": ("CREATE EXTENSION pg_trgm;", "permission denied"),
    "untrusted-language": (
        "CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'libc', 'getpid';",
        "permission denied",
    ),
    "become-superuser": ("SET ROLE postgres;", "permission denied"),
    "promote-itself": ("ALTER ROLE nself_plugin_notes SUPERUSER;", "must be superuser"),
    "schema-of-its-own": ("CREATE SCHEMA elsewhere;", "permission denied"),
    "forge-history": (
        "SELECT public.np_plugin_migration('forget', 'other', '1', '', '', true, 'applied',"
        " 'x', 0, '');",
        "may not record migrations of plugin other",
    ),
    "read-core-files": ("SELECT pg_read_file('/etc/passwd');", "permission denied"),
    # the same classes in other spellings, and the ways around a role's limits
    "copy-in-a-do-block": (
        "DO $$BEGIN EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', 'touch "
        "/tmp/nself-sandbox-pwned'); END$$;",
        "privileges of the pg_execute_server_program role",
    ),
    "copy-from-a-file": (
        "CREATE TABLE t (x text);\nCOPY t FROM '/etc/passwd';",
        "privileges of the pg_read_server_files role",
    ),
    "server-side-large-object": ("SELECT lo_import('/etc/passwd');", "permission denied"),
    "session-authorization": ("SET SESSION AUTHORIZATION postgres;", "permission denied"),
    "set-role-in-a-function": (
        "CREATE FUNCTION up() RETURNS void LANGUAGE sql SET role = postgres AS 'SELECT 1';",
        "permission denied",
    ),
    "definer-function-given-away": (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';\n"
        "ALTER FUNCTION f() OWNER TO postgres;",
        "must be",
    ),
    "default-privileges-of-another-role": (
        "ALTER DEFAULT PRIVILEGES FOR ROLE postgres GRANT ALL ON TABLES TO nself_plugin_notes;",
        'must be member of role "postgres"',
    ),
    "event-trigger": (
        "CREATE FUNCTION et() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN END$$;\n"
        "CREATE EVENT TRIGGER et ON ddl_command_start EXECUTE FUNCTION et();",
        "permission denied to create event trigger",
    ),
    "schema-for-another-role": ("CREATE SCHEMA AUTHORIZATION postgres;", "permission denied"),
    "schema-given-away": ("ALTER SCHEMA notes OWNER TO postgres;", "must be"),
    "schema-renamed": ("ALTER SCHEMA notes RENAME TO customers_v2;", "permission denied"),
    "table-in-pg-catalog": ("CREATE TABLE pg_catalog.evil (id int);", "permission denied"),
    "trigger-on-a-core-table": (
        "CREATE FUNCTION tf() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;\n"
        "CREATE TRIGGER tf BEFORE INSERT ON public.customers FOR EACH ROW EXECUTE FUNCTION tf();",
        "permission denied",
    ),
    "policy-on-a-core-table": (
        "CREATE POLICY p ON public.customers USING (true);",
        "must be owner",
    ),
    "view-of-a-core-table": (
        "CREATE VIEW v AS SELECT * FROM public.customers;\nSELECT * FROM v;",
        "permission denied",
    ),
    "alter-system": (
        "-- nself:no-transaction\nALTER SYSTEM SET log_statement = 'none';",
        "permission denied",
    ),
    "own-role-preloads-a-library": (
        "ALTER ROLE nself_plugin_notes SET session_preload_libraries = 'auto_explain';",
        "permission denied",
    ),
    "database-setting": (
        "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = notes, public',"
        " current_database()); END$$;",
        "must be owner",
    ),
    "publication": ("CREATE PUBLICATION p FOR ALL TABLES;", "permission denied for database"),
    "create-database": ("-- nself:no-transaction\nCREATE DATABASE evil;", "permission denied"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attacks_fail_in_the_database_as_the_plugins_role(
    attack: str, sandbox: Path, tmp_path: Path, nself: Any, pg: Cluster, db: str
) -> None:
    sql, refusal = ATTACKS[attack]
    install(sandbox, tmp_path, sql)
    before = snapshot(pg, db)
    result = migrate(nself, sandbox)
    assert result.code == 1, result.output
    assert "plugin notes migration 0001_init failed" in result.err
    assert refusal in result.err, result.err
    assert "Traceback" not in result.output
    assert snapshot(pg, db) == before
    assert not Path("/tmp/nself-sandbox-pwned").exists()
    applied = "SELECT count(*) FROM np_schema_migrations WHERE source = 'notes'"
    if "nself:no-transaction" in sql:  # kept as interrupted, for the next run to settle
        applied += " AND state <> 'running'"
    assert pg.sql(applied, db) == [(0,)]


def test_a_role_named_like_the_schema_is_refused(
    sandbox: Path, tmp_path: Path, nself: Any, pg: Cluster, db: str
) -> None:
    """A schema named after a role comes first in that role's search path ("$user")."""
    pg.sql("CREATE ROLE notes NOLOGIN")
    try:
        install(sandbox, tmp_path, "CREATE TABLE items (id int);")
        result = migrate(nself, sandbox)
        assert result.code == 1
        assert "plugin notes: a database role is named notes" in result.err
        assert pg.sql("SELECT 1 FROM pg_namespace WHERE nspname = 'notes'", db) == []
    finally:
        pg.sql("DROP ROLE notes")


def test_a_restore_loads_a_plugins_rows_as_its_role(
    sandbox: Path, tmp_path: Path, nself: Any, pg: Cluster, db: str, monkeypatch: Any
) -> None:
    """COPY evaluates CHECK constraints as the restoring user: a plugin's function in one
    must not get the superuser's rights through a backup (verify and restore)."""
    monkeypatch.setenv("NSELF_PG_BINDIR", str(pg.bindir))
    marker = Path(f"/tmp/nself-restore-pwned-{os.getpid()}")
    marker.unlink(missing_ok=True)
    up = f"""
CREATE FUNCTION ok(x int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('is_superuser') = 'on' THEN
    EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {marker}''';
  END IF;
  RETURN true;
END $$;
CREATE TABLE items (x int CHECK (ok(x)));
INSERT INTO items (x) VALUES (1), (2);
"""
    install(sandbox, tmp_path, up)
    assert migrate(nself, sandbox).code == 0
    made = nself("db", "backup", "--json", cwd=sandbox)
    assert made.code == 0, made.output
    name = json.loads(made.out[made.out.index("{") :])["name"]
    try:
        verified = nself("db", "backup", "verify", name, cwd=sandbox)
        assert verified.code == 0, verified.output
        assert not marker.exists()
        pg.sql("DELETE FROM customers", db)
        restored = nself("db", "restore", name, "--no-safety-backup", cwd=sandbox)
        assert restored.code == 0, restored.output
        assert not marker.exists()
        assert pg.sql("SELECT x FROM notes.items ORDER BY x", db) == [(1,), (2,)]
        assert pg.sql("SELECT count(*) FROM public.customers", db) == [(1,)]
        owner = pg.sql("SELECT tableowner FROM pg_tables WHERE tablename = 'items'", db)
        assert owner == [("nself_plugin_notes",)]
    finally:
        marker.unlink(missing_ok=True)
        for (kept,) in pg.sql("SELECT datname FROM pg_database"):
            if kept != db and kept.startswith(db[:30]):
                pg.sql(f'DROP DATABASE "{kept}" WITH (FORCE)')


def test_remove_delete_data_drops_the_schema_and_role_only_with_a_yes(
    sandbox: Path, tmp_path: Path, nself: Any, pg: Cluster, db: str
) -> None:
    """`plugin remove --delete-data` drops the plugin's schema, what its role owns, its
    history and the role, as the superuser, once the user said yes; nothing of another
    plugin or of the core goes, and a refusal of the database leaves everything."""
    install(sandbox, tmp_path, "CREATE TABLE items (id int);\nINSERT INTO items VALUES (1);")
    install(
        sandbox,
        tmp_path / "o",
        "CREATE TABLE keep (id int);\nINSERT INTO keep VALUES (7);",
        name="other",
    )
    assert migrate(nself, sandbox).code == 0
    before = snapshot(pg, db)
    roles = "SELECT rolname FROM pg_roles WHERE rolname LIKE 'nself_plugin_%' ORDER BY 1"
    schemas = "SELECT nspname FROM pg_namespace WHERE nspname IN ('notes', 'other') ORDER BY 1"
    history = (
        "SELECT source, count(*) FROM np_schema_migrations"
        " WHERE source IN ('notes', 'other') GROUP BY 1 ORDER BY 1"
    )

    def whole() -> None:  # both plugins' roles, notes's rows and folder: nothing went
        assert pg.sql(roles) == [("nself_plugin_notes",), ("nself_plugin_other",)]
        assert pg.sql("SELECT * FROM notes.items", db) == [(1,)]
        assert (sandbox / "plugins" / "notes").is_dir()

    whole()
    asked = nself("plugin", "remove", "notes", "--delete-data", cwd=sandbox)  # no terminal
    assert asked.code == 4, asked.output
    assert (
        "dropping plugin notes's database schema notes and role nself_plugin_notes needs your yes"
        in asked.err
    )
    whole()

    # A view of the project's own over the plugin's table: the database refuses, nothing goes.
    pg.sql("CREATE VIEW public.mine AS SELECT * FROM notes.items", db)
    refused = nself("plugin", "remove", "notes", "--delete-data", "--yes", cwd=sandbox)
    assert refused.code == 1, refused.output
    assert "plugin notes: its database objects were not dropped" in refused.err
    assert "Traceback" not in refused.output
    whole()
    assert pg.sql("SELECT * FROM public.mine", db) == [(1,)]
    pg.sql("DROP VIEW public.mine", db)

    done = nself("plugin", "remove", "notes", "--delete-data", "--yes", cwd=sandbox)
    assert done.code == 0, done.output
    assert "dropped the database role nself_plugin_notes" in done.out
    assert pg.sql(roles) == [("nself_plugin_other",)]
    assert pg.sql(schemas, db) == [("other",)]
    assert pg.sql(history, db) == [("other", 1)]
    assert pg.sql("SELECT * FROM other.keep", db) == [(7,)]
    assert snapshot(pg, db) == before  # the core's tables and rows, roles, extensions
    assert not (sandbox / "plugins" / "notes").exists()
