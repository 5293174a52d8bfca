"""Hasura serves a bundle's tables through a source of their own, logged in as the bundle's
database role: whatever the schema's triggers, defaults and views do runs with that role's
rights, never the superuser's (real PostgreSQL 15, see pg_cluster.py).

The Hasura image cannot be pulled here, so this test stands in for it: it runs on a
connection made from the URL nself gives Hasura for the plugin's source what Hasura v2.44.0
runs on a source at start-up (``resolveDatabaseMetadata`` in
server/src-lib/Hasura/Backends/Postgres/DDL/Source.hs: the tables' and functions' metadata
and ``fetchPgScalars``, all from ``pg_catalog``), and a query and an insert of a tracked
table in the shape Hasura builds them (a CTE ``INSERT ... RETURNING *, <check> AS
check__constraint`` then ``bool_and``: .../Translate/Returning.hs, ``mkCheckErrorExp``;
``SET LOCAL "hasura.user"``: MonadTx.hs ``setHeadersTx``). Hasura reads or makes a source's
own catalog (``prepareCatalog``: ``hdb_catalog``, its version table) only for a source with
event triggers (``initCatalogIfNeeded`` in .../RQL/DDL/Schema/Cache.hs), which a bundle may
not declare: so the plugin's role is given nothing of ``hdb_catalog``, made here by the
superuser as Hasura makes it for its own metadata and default source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

import pg_cluster
from nself_builtins.plugins import install_folder
from pg_cluster import Cluster
from plugin_helpers import make_bundle

pytestmark = pytest.mark.postgres
pg, db = pg_cluster.pg, pg_cluster.db

CORE = """
CREATE SCHEMA auth;
CREATE TABLE auth.users (id int PRIMARY KEY, email text);
INSERT INTO auth.users VALUES (1, 'admin@example.com');
"""
# What Hasura makes for its default source, as the superuser, at its first start.
HASURA_CATALOG = """
CREATE SCHEMA hdb_catalog;
CREATE TABLE hdb_catalog.hdb_source_catalog_version (version text NOT NULL,
                                                    upgraded_on timestamptz NOT NULL);
INSERT INTO hdb_catalog.hdb_source_catalog_version VALUES ('3', now());
CREATE TABLE hdb_catalog.event_log (id text PRIMARY KEY, payload jsonb);
CREATE TABLE hdb_catalog.hdb_metadata (id int PRIMARY KEY, metadata json);
INSERT INTO hdb_catalog.hdb_metadata VALUES (1, '{"admin": "secret"}');
"""
# A bundle's schema, as an attacker writes it: every object reaches for the host (COPY
# ... TO PROGRAM through query_to_xml), the core's users or another plugin's table.
NOTES = """
CREATE TABLE items (id bigserial PRIMARY KEY, body text NOT NULL);
CREATE FUNCTION run_program() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE 'COPY (SELECT 1) TO PROGRAM ''cat >/dev/null''';
  RETURN 'ran';
END $$;
CREATE FUNCTION steal(what text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE got text;
BEGIN
  EXECUTE 'SELECT string_agg(t::text, '','') FROM ' || what || ' t' INTO got;
  RETURN got;
END $$;
CREATE FUNCTION on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM notes.run_program();
  RETURN NEW;
END $$;
CREATE TABLE triggered (id bigserial PRIMARY KEY, body text);
CREATE TRIGGER triggered_program BEFORE INSERT ON triggered
  FOR EACH ROW EXECUTE FUNCTION on_insert();
CREATE TABLE defaulted (id bigserial PRIMARY KEY, body text,
                        loot text DEFAULT notes.steal('auth.users'));
CREATE TABLE checked (id bigserial PRIMARY KEY, body text CHECK (notes.run_program() IS NOT NULL));
CREATE VIEW program_view AS
  SELECT query_to_xml('SELECT notes.run_program()', true, true, '') AS x;
CREATE VIEW users_view AS SELECT notes.steal('auth.users') AS x;
CREATE VIEW other_view AS SELECT notes.steal('other.secrets') AS x;
"""
TRACKED = "".join(
    f"- table: {{schema: notes, name: {t}}}\n  select_permissions:\n"
    "    - role: user\n      permission: {columns: [id], filter: {}}\n"
    for t in ("items", "triggered", "defaulted", "checked", "program_view", "users_view")
)
OTHER = """
CREATE TABLE secrets (id int PRIMARY KEY, token text);
INSERT INTO secrets VALUES (1, 'other-plugin-token');
"""


def bundle(tmp_path: Path, name: str, up: str, hasura: bool) -> Path:
    extra = '[database]\nmigrations = "migrations"\n'
    files = {"migrations/0001_init.up.sql": up}
    if hasura:
        extra += 'hasura_metadata = "hasura/tables.yaml"\n'
        files["hasura/tables.yaml"] = TRACKED
    return make_bundle(tmp_path / "src", name, extra=extra, service=False, files=files)


project_db = pg_cluster.with_plugins(CORE)  # the project on db, its core tables made


def hasura_url(project: Path, name: str) -> str:
    """The URL `nself build` gives Hasura for the plugin's source (from .env.computed)."""
    for line in (project / ".env.computed").read_text().splitlines():
        if line.startswith(f"HASURA_PLUGIN_{name.upper()}_DATABASE_URL="):
            return line.split("=", 1)[1].strip("'\"")
    raise AssertionError(f"no Hasura source URL for {name}")


def connect_as_hasura(url: str, pg: Cluster, db: str) -> psycopg.Connection[Any]:
    """Hasura's connection to the plugin's source (the stack's host name aside)."""
    parts = urlsplit(url)
    assert parts.path.lstrip("/") == "nself"
    return psycopg.connect(
        host="127.0.0.1",
        port=pg.port,
        user=parts.username,
        password=parts.password,
        dbname=db,
        autocommit=True,
    )


def source_start_up(conn: psycopg.Connection[Any]) -> None:
    """What Hasura runs on the source at start-up (a source without event triggers: the
    introspection of its tables, functions and scalars), in one read-only transaction."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        scalars = conn.execute(
            "SELECT coalesce(json_agg(typname), '[]') FROM pg_catalog.pg_type WHERE typtype = 'b'"
        ).fetchone()
        assert scalars is not None and "text" in scalars[0]
        columns = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'notes.items'::regclass"
            " AND attnum > 0 ORDER BY attnum"
        ).fetchall()
        assert columns == [("id",), ("body",)]
        functions = conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'notes' ORDER BY 1"
        ).fetchall()
        assert ("run_program",) in functions


def hasura_insert(conn: psycopg.Connection[Any], table: str) -> Any:
    """An insert mutation as Hasura sends it for role user (check: true)."""
    with conn.transaction():
        conn.execute("""SET LOCAL "hasura.user" = '{"x-hasura-role":"user"}'""")
        return conn.execute(
            f'WITH "m" AS (INSERT INTO "notes"."{table}" ("body") VALUES (%s)'
            ' RETURNING *, (true) AS "check__constraint"),'
            ' "a" AS (SELECT "id" FROM "m")'
            " SELECT json_build_object('affected_rows', (SELECT count(*) FROM \"a\")),"
            ' (SELECT coalesce(bool_and("check__constraint"), true) FROM "m")',
            ("hello",),
        ).fetchone()


def hasura_select(conn: psycopg.Connection[Any], table: str) -> Any:
    with conn.transaction():
        conn.execute("""SET LOCAL "hasura.user" = '{"x-hasura-role":"user"}'""")
        return conn.execute(
            'SELECT coalesce(json_agg("root"), \'[]\') FROM (SELECT row_to_json((SELECT "e"'
            ' FROM (SELECT "b".*) AS "e")) AS "root"'
            f' FROM (SELECT * FROM "notes"."{table}" WHERE true) AS "b") AS "r"'
        ).fetchone()


def test_hasura_serves_a_plugins_tables_as_its_role_and_attacks_fail(
    project_db: Path, tmp_path: Path, nself: Any, pg: Cluster, db: str
) -> None:
    install_folder(project_db, bundle(tmp_path, "other", OTHER, hasura=False))
    install_folder(project_db, bundle(tmp_path, "notes", NOTES, hasura=True))
    assert nself("secrets", "generate", cwd=project_db).code == 0
    migrated = nself("db", "migrate", "up", cwd=project_db)
    assert migrated.code == 0, migrated.output
    built = nself("build", cwd=project_db)
    assert built.code == 0, built.output
    url = hasura_url(project_db, "notes")
    assert urlsplit(url).username == "nself_plugin_notes"
    assert url not in built.output and str(urlsplit(url).password) not in built.output
    assert (project_db / ".env.computed").stat().st_mode & 0o777 == 0o600

    # Hasura's first start makes its catalog, as the superuser; a later `nself db migrate
    # up` gives the plugin's role nothing of it: Hasura does not read it on the source.
    pg.sql(HASURA_CATALOG, db)
    privilege = (
        "SELECT has_schema_privilege(%s, 'hdb_catalog', 'USAGE'),"
        " has_table_privilege(%s, 'hdb_catalog.hdb_source_catalog_version', 'SELECT')"
    )
    again = nself("db", "migrate", "up", cwd=project_db)
    assert again.code == 0, again.output
    with pg.connect(db) as su:
        for role in ("nself_plugin_notes", "nself_plugin_other"):
            assert su.execute(privilege, (role,) * 2).fetchone() == (False, False)

    with connect_as_hasura(url, pg, db) as conn:
        source_start_up(conn)
        # The tracked table works: an insert and a query as Hasura sends them.
        inserted = hasura_insert(conn, "items")
        assert inserted == ({"affected_rows": 1}, True)
        rows = hasura_select(conn, "items")
        assert rows == ([{"id": 1, "body": "hello"}],)
        # ... and nothing of Hasura's catalog: no metadata, no event log, no DDL.
        for statement in (
            "SELECT version FROM hdb_catalog.hdb_source_catalog_version",
            "SELECT * FROM hdb_catalog.hdb_metadata",
            "SELECT * FROM hdb_catalog.event_log",
            "CREATE TABLE hdb_catalog.mine (id int)",
            "INSERT INTO hdb_catalog.hdb_source_catalog_version VALUES ('4', now())",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # Every expression of the schema runs with the role's rights: it fails.
        attacks = {
            "trigger COPY TO PROGRAM": lambda: hasura_insert(conn, "triggered"),
            "DEFAULT reading auth.users": lambda: hasura_insert(conn, "defaulted"),
            "CHECK COPY TO PROGRAM": lambda: hasura_insert(conn, "checked"),
            "view COPY TO PROGRAM": lambda: hasura_select(conn, "program_view"),
            "view reading auth.users": lambda: hasura_select(conn, "users_view"),
            "view reading another plugin": lambda: hasura_select(conn, "other_view"),
        }
        for what, attack in attacks.items():
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                attack()
            assert "permission denied" in str(refused.value) or "pg_execute_server_program" in str(
                refused.value
            ), what
    assert pg.sql("SELECT count(*) FROM notes.triggered", db) == [(0,)]
    assert pg.sql("SELECT count(*) FROM notes.defaulted", db) == [(0,)]

    # The same objects do reach the host and the core's data as the superuser (as Hasura
    # served them before): the attacks above are real.
    with pg.connect(db) as su, su.transaction():
        loot = su.execute(
            "INSERT INTO notes.defaulted (body) VALUES ('x') RETURNING loot"
        ).fetchone()
        assert loot is not None and "admin@example.com" in loot[0]
        su.execute("INSERT INTO notes.triggered (body) VALUES ('x')")
        ran = su.execute("SELECT x::text FROM notes.program_view").fetchone()
        assert ran is not None and "ran" in ran[0]
        other = su.execute("SELECT x FROM notes.other_view").fetchone()
        assert other is not None and "other-plugin-token" in other[0]
        raise psycopg.Rollback()
