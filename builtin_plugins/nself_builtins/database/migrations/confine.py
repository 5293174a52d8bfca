"""A plugin bundle's migrations run as the bundle's own database role.

Before the first of them runs, the superuser (the runner's own connection, under the
migration lock) provisions the role: it logs in with the password from the project's
secrets, is no superuser and may create no database, role or replication stream, is a
member of nothing (but ``pg_read_all_data`` when the bundle was granted
``database-read``), and owns exactly one schema. Core creates the extensions the bundle
declared. The migration itself then runs on a connection logged in as that role, so
PostgreSQL, not a text check, refuses what it may not do (``COPY ... PROGRAM``,
``CREATE ROLE``, ``CREATE EXTENSION``, objects outside its schema, other tables).

The role writes no core table: it records its own history through one function that
checks, by its login (``session_user``), that it records only its own migrations.

Hasura serves a bundle's tables through a source of their own that logs in as the
bundle's role (docs/plugins/security.md), so whatever the schema's triggers, defaults,
checks and views do runs with that role's rights. The role needs nothing of Hasura's
catalog for it: at a source's start-up Hasura v2.44.0 reads the tables', functions' and
scalar types' metadata from ``pg_catalog`` (``resolveDatabaseMetadata`` in
server/src-lib/Hasura/Backends/Postgres/DDL/Source.hs), and reads or makes the source's
``hdb_catalog`` (``prepareCatalog``) only when the source has event triggers
(``initCatalogIfNeeded`` in .../RQL/DDL/Schema/Cache.hs), which a bundle may not declare.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nself_sdk import DatabaseRole, NselfError

from .history import HISTORY, LOG, History

if TYPE_CHECKING:
    import psycopg

    from .files import Item

ROLE_PREFIX = "nself_plugin_"
RECORD = "public.np_plugin_migration"
RECORD_ARGS = "text, text, text, text, text, boolean, text, text, integer, text"
RECORD_SQL = f"""
CREATE OR REPLACE FUNCTION {RECORD}(
    p_action text, p_source text, p_version text, p_name text, p_sha256 text,
    p_transactional boolean, p_state text, p_who text, p_ms integer, p_detail text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF session_user::text IS DISTINCT FROM '{ROLE_PREFIX}' || replace(p_source, '-', '_') THEN
    RAISE EXCEPTION 'role % may not record migrations of plugin %', session_user, p_source
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF p_action = 'record' THEN
    INSERT INTO {HISTORY} (source, version, name, sha256, transactional, state, applied_by,
                           db_user, execution_ms)
    VALUES (p_source, p_version, p_name, p_sha256, p_transactional, p_state, p_who,
            session_user, p_ms);
  ELSIF p_action = 'finished' THEN
    UPDATE {HISTORY} SET state = 'applied', execution_ms = p_ms, applied_at = now()
     WHERE source = p_source AND version = p_version;
  ELSIF p_action = 'forget' THEN
    DELETE FROM {HISTORY} WHERE source = p_source AND version = p_version;
  ELSE
    INSERT INTO {LOG} (action, source, version, name, sha256, who, db_user, detail)
    VALUES (p_action, p_source, p_version, p_name, p_sha256, p_who, session_user,
            coalesce(p_detail, ''));
  END IF;
END $$;
REVOKE ALL ON FUNCTION {RECORD}({RECORD_ARGS}) FROM PUBLIC;
"""


def _ident(name: str) -> Any:
    from psycopg import sql

    return sql.Identifier(name)


def _fail(source: str, message: str, hint: str) -> NselfError:
    return NselfError(f"plugin {source}: {message}; nothing was applied", hint)


def provision(history: History, role: DatabaseRole, source: str, password: str) -> None:
    """Create or correct ``role`` and its schema, as the superuser, in one transaction."""
    from psycopg import sql

    from nself_builtins.shared.secrets import scram_verifier

    if not role.name.startswith(ROLE_PREFIX):
        raise _fail(source, f"{role.name} is not a plugin role", "reinstall the plugin")
    if not password:
        raise _fail(
            source,
            f"its database role has no password yet ({role.password_setting})",
            "run `nself secrets generate` (with --env ENV outside local: it writes the "
            "password to that target's secrets file)",
        )
    conn = history.conn
    r, schema = _ident(role.name), _ident(role.schema)
    with conn.transaction():
        clash = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role.schema,)).fetchone()
        if clash:
            raise _fail(
                source,
                f"a database role is named {role.schema}, so the plugin's schema would come "
                "first in that role's search path",
                "rename or remove that role, or do not install the plugin",
            )
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role.name,)).fetchone()
        attributes = sql.SQL(
            "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT "
            "CONNECTION LIMIT 50 PASSWORD {}"
        ).format(sql.Literal(scram_verifier(password)))
        verb = "ALTER ROLE {} WITH " if exists else "CREATE ROLE {} WITH "
        conn.execute(sql.SQL(verb).format(r) + attributes)
        for (member_of,) in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " WHERE m.member = to_regrole(%s)",
            (role.name,),
        ).fetchall():
            if not (role.read_all and member_of == "pg_read_all_data"):
                conn.execute(sql.SQL("REVOKE {} FROM {}").format(_ident(member_of), r))
        if role.read_all:
            conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(r))
        owner = conn.execute(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
            (role.schema,),
        ).fetchone()
        if owner is None:
            conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(schema, r))
        elif owner[0].strip('"') != role.name:
            raise _fail(
                source,
                f"the schema {role.schema} exists and belongs to {owner[0]}, not to the "
                f"plugin's role {role.name}",
                f"rename the schema {role.schema}, or do not install the plugin",
            )
        db = conn.execute("SELECT current_database()").fetchone()
        assert db is not None
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(_ident(db[0]), r))
        conn.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET search_path = {}, public").format(
                r, _ident(db[0]), schema
            )
        )
        opened = conn.execute(
            "SELECT has_schema_privilege(%s, 'public', 'CREATE'),"
            " has_database_privilege(%s, current_database(), 'CREATE')",
            (role.name, role.name),
        ).fetchone()
        if opened and any(opened):
            where = "schema public" if opened[0] else "the database"
            raise _fail(
                source,
                f"every role may create objects in {where}, so the plugin's role could too",
                "close it for everyone but its owner: REVOKE CREATE ON SCHEMA public FROM "
                "PUBLIC (PostgreSQL 15 and later do so by default)",
            )
        for extension in role.extensions:
            conn.execute(
                sql.SQL("CREATE EXTENSION IF NOT EXISTS {} SCHEMA public").format(_ident(extension))
            )
        conn.execute(RECORD_SQL)
        conn.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION {}(" + RECORD_ARGS + ") TO {}").format(
                sql.SQL(RECORD), r
            )
        )


class ConfinedHistory(History):
    """The history as a plugin's own role writes it: through ``np_plugin_migration``."""

    def _call(
        self,
        action: str,
        source: str,
        version: str,
        name: str = "",
        digest: str | None = None,
        transactional: bool = True,
        state: str = "applied",
        ms: int | None = None,
        detail: str = "",
    ) -> None:
        self.conn.execute(
            f"SELECT {RECORD}(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (action, source, version, name, digest, transactional, state, self.who, ms, detail),
        )

    def record(self, item: Item, state: str, execution_ms: int | None) -> None:
        self._call(
            "record",
            item.source,
            item.version,
            item.name,
            item.sha256,
            item.transactional,
            state,
            execution_ms,
        )

    def finished(self, item: Item, execution_ms: int) -> None:
        self._call("finished", item.source, item.version, ms=execution_ms)

    def forget(self, source: str, version: str) -> None:
        self._call("forget", source, version)

    def audit(
        self,
        action: str,
        source: str,
        version: str,
        name: str,
        digest: str | None,
        detail: str = "",
    ) -> None:
        self._call(action, source, version, name, digest, detail=detail)

    def started(self, item: Item) -> None:
        with self.conn.transaction():
            self.conn.execute("SET LOCAL synchronous_commit = off")
            self.audit("apply-started", item.source, item.version, item.name, item.sha256)


def connect_as(
    transport: Any, role: DatabaseRole, source: str, password: str
) -> psycopg.Connection[Any]:
    """A connection logged in as the plugin's role (its failure names the plugin)."""
    from .history import connect

    try:
        return connect(transport.as_login(role.name, password))
    except NselfError as exc:
        raise _fail(
            source, f"cannot log in as its role {role.name}: {exc.message}", exc.hint or ""
        ) from None
