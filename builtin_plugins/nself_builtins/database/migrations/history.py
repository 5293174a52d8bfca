"""The migration history in the database: its tables, the run lock, the audit log, and
whether the files still agree with it.

Every applied migration has a row in ``np_schema_migrations`` (version, name, sha256,
applied time, who); every action (apply, revert, repair) a row in
``np_schema_migrations_log``. One run at a time holds an advisory lock per database.
"""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from nself_sdk import NselfError, Problem

from ..transport import Transport
from .files import PROJECT, Item, version_key

if TYPE_CHECKING:
    import psycopg

HISTORY = "public.np_schema_migrations"
LOG = "public.np_schema_migrations_log"
# pg_advisory_lock key: "nself-mg" as a 64-bit number; advisory locks are per database.
LOCK_KEY = int.from_bytes(b"nself-mg", "big") & 0x7FFF_FFFF_FFFF_FFFF

SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS {HISTORY} (
    source        text        NOT NULL,
    version       text        NOT NULL,
    name          text        NOT NULL,
    sha256        text        NOT NULL,
    transactional boolean     NOT NULL DEFAULT true,
    state         text        NOT NULL DEFAULT 'applied' CHECK (state IN ('applied', 'running')),
    applied_at    timestamptz NOT NULL DEFAULT now(),
    applied_by    text        NOT NULL,
    db_user       text        NOT NULL DEFAULT current_user,
    execution_ms  integer,
    seq           bigserial,
    PRIMARY KEY (source, version)
);
CREATE TABLE IF NOT EXISTS {LOG} (
    id       bigserial   PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    action   text        NOT NULL,
    source   text        NOT NULL,
    version  text        NOT NULL,
    name     text        NOT NULL DEFAULT '',
    sha256   text,
    who      text        NOT NULL,
    db_user  text        NOT NULL DEFAULT current_user,
    detail   text        NOT NULL DEFAULT ''
);
"""

# The audit log is append-only, for every role, owner and superusers included: its rows
# cannot be changed, deleted or truncated (ALWAYS triggers fire even with
# session_replication_role = replica). A superuser running migrations also gets an event
# trigger that refuses dropping the table or its triggers and disabling them.
GUARD_SQL = f"""
CREATE OR REPLACE FUNCTION public.np_schema_migrations_log_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the nself migration audit log ({LOG}) is append-only'
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER np_log_append_only BEFORE UPDATE OR DELETE ON {LOG}
  FOR EACH ROW EXECUTE FUNCTION public.np_schema_migrations_log_guard();
CREATE TRIGGER np_log_no_truncate BEFORE TRUNCATE ON {LOG}
  FOR EACH STATEMENT EXECUTE FUNCTION public.np_schema_migrations_log_guard();
ALTER TABLE {LOG} ENABLE ALWAYS TRIGGER np_log_append_only;
ALTER TABLE {LOG} ENABLE ALWAYS TRIGGER np_log_no_truncate;
REVOKE UPDATE, DELETE, TRUNCATE ON {LOG} FROM PUBLIC;
"""
KEEP_SQL = f"""
CREATE OR REPLACE FUNCTION public.np_schema_migrations_log_keep() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_EVENT = 'sql_drop' AND EXISTS (
      SELECT 1 FROM pg_event_trigger_dropped_objects()
       WHERE object_identity = '{LOG}'
          OR object_identity LIKE 'np\\_log\\_% on {LOG}') THEN
    RAISE EXCEPTION 'the nself migration audit log ({LOG}) cannot be dropped'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_EVENT = 'ddl_command_end' AND EXISTS (
      SELECT 1 FROM pg_event_trigger_ddl_commands()
       WHERE objid = to_regclass('{LOG}') AND command_tag = 'ALTER TABLE') THEN
    RAISE EXCEPTION 'the nself migration audit log ({LOG}) cannot be altered'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
END $$;
CREATE EVENT TRIGGER np_log_keep_drop ON sql_drop
  EXECUTE FUNCTION public.np_schema_migrations_log_keep();
CREATE EVENT TRIGGER np_log_keep_alter ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
  EXECUTE FUNCTION public.np_schema_migrations_log_keep();
ALTER EVENT TRIGGER np_log_keep_drop ENABLE ALWAYS;
ALTER EVENT TRIGGER np_log_keep_alter ENABLE ALWAYS;
"""


def who() -> str:
    """The person (and machine) running the command, for the history and the audit log."""
    try:
        user = getpass.getuser()
    except Exception:  # no name for this uid (containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Applied:
    source: str
    version: str
    name: str
    sha256: str
    state: str
    applied_at: datetime
    applied_by: str
    transactional: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.version)

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


# -- the connection and the lock ----------------------------------------------------------------


def connect(transport: Transport) -> psycopg.Connection[Any]:
    conn = transport.connect(autocommit=True)
    session_settings(conn)
    return conn


def session_settings(conn: psycopg.Connection[Any]) -> None:
    # A killed runner must not leave its migration running on the server (holding the
    # lock): with this the server checks the client socket and aborts the statement.
    if conn.info.server_version >= 140000:
        conn.execute("SET client_connection_check_interval = '1s'")


def reset_session(conn: psycopg.Connection[Any]) -> None:
    """Undo whatever a migration SET, keeping the runner's own session settings."""
    conn.execute("RESET ALL")
    session_settings(conn)


@contextmanager
def locked(conn: psycopg.Connection[Any], timeout: float) -> Iterator[None]:
    """Hold the migration lock of ``conn``'s database (waiting up to ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if got and got[0]:
            break
        if time.monotonic() >= deadline:
            raise NselfError(
                f"another migration run holds the migration lock{_holder(conn)}; "
                f"gave up after {timeout:g}s",
                "wait for it to finish (or stop it), then run the command again",
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def _holder(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute(
        """SELECT a.pid, a.usename, a.client_addr::text, a.backend_start
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND ((l.classid::bigint << 32) | l.objid::bigint) = %s
            LIMIT 1""",
        (LOCK_KEY,),
    ).fetchone()
    if not row:
        return ""
    pid, user, addr, since = row
    origin = addr or "local socket"
    return f" (server pid {pid}, user {user}, from {origin}, since {since:%H:%M:%S})"


# -- the tables -----------------------------------------------------------------------------


class History:
    """The history and audit tables of one database, through one connection."""

    def __init__(self, conn: psycopg.Connection[Any], who: str) -> None:
        self.conn = conn
        self.who = who

    def ensure_tables(self) -> None:
        row = self.conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL,"
            " EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'np_log_append_only'"
            "         AND tgrelid = to_regclass(%s)),"
            " EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'np_log_keep_drop'),"
            " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
            (HISTORY, LOG),
        ).fetchone()
        assert row is not None
        tables, guarded, kept, superuser = row
        if tables and guarded and (kept or not superuser):
            return  # the usual case: one round trip
        with self.conn.transaction():
            self.conn.execute(SCHEMA_SQL)
            if not guarded:
                self.conn.execute(GUARD_SQL)
            if superuser and not kept:
                self.conn.execute(KEEP_SQL)

    def applied(self) -> list[Applied]:
        if not self._exists(HISTORY):
            return []
        rows = self.conn.execute(
            f"""SELECT source, version, name, sha256, state, applied_at, applied_by, transactional
                  FROM {HISTORY} ORDER BY seq"""
        ).fetchall()
        return [Applied(*row) for row in rows]

    def record(self, item: Item, state: str, execution_ms: int | None) -> None:
        self.conn.execute(
            f"INSERT INTO {HISTORY} (source, version, name, sha256, transactional, state,"
            " applied_by, execution_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                item.source,
                item.version,
                item.name,
                item.sha256,
                item.transactional,
                state,
                self.who,
                execution_ms,
            ),
        )

    def finished(self, item: Item, execution_ms: int) -> None:
        """A non-transactional migration recorded as running has completed."""
        self.conn.execute(
            f"UPDATE {HISTORY} SET state = 'applied', execution_ms = %s,"
            " applied_at = now() WHERE source = %s AND version = %s",
            (execution_ms, item.source, item.version),
        )

    def forget(self, source: str, version: str) -> None:
        self.conn.execute(
            f"DELETE FROM {HISTORY} WHERE source = %s AND version = %s", (source, version)
        )

    def accept(self, source: str, version: str, digest: str) -> None:
        self.conn.execute(
            f"UPDATE {HISTORY} SET sha256 = %s WHERE source = %s AND version = %s",
            (digest, source, version),
        )

    def mark_applied(self, source: str, version: str) -> None:
        self.conn.execute(
            f"UPDATE {HISTORY} SET state = 'applied' WHERE source = %s AND version = %s",
            (source, version),
        )

    def audit(
        self,
        action: str,
        source: str,
        version: str,
        name: str,
        digest: str | None,
        detail: str = "",
    ) -> None:
        self.conn.execute(
            f"INSERT INTO {LOG} (action, source, version, name, sha256, who, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (action, source, version, name, digest, self.who, detail),
        )

    def started(self, item: Item) -> None:
        """Logged before a migration runs (not waiting for the disk: the migration's own
        commit flushes it): a start without an outcome is an interrupted apply."""
        from psycopg import sql

        values = sql.SQL(", ").join(
            sql.Literal(v)
            for v in ("apply-started", item.source, item.version, item.name, item.sha256)
        )
        self.conn.execute(
            sql.SQL(
                "BEGIN; SET LOCAL synchronous_commit = off;"
                " INSERT INTO {} (action, source, version, name, sha256, who) VALUES ({}, {});"
                " COMMIT"
            ).format(sql.SQL(LOG), values, sql.Literal(self.who))
        )

    def settle_started(self) -> list[tuple[str, str, str]]:
        """Log ``apply-interrupted`` for every start without an outcome (a run that was
        killed or lost its connection); only under the lock, so no such run is alive."""
        if not self._exists(LOG):
            return []
        rows = self.conn.execute(
            f"INSERT INTO {LOG} (action, source, version, name, sha256, who, detail)"
            " SELECT 'apply-interrupted', s.source, s.version, s.name, s.sha256, %s,"
            "        'its run stopped before it finished (started ' || s.at::text"
            "        || ' by ' || s.who || ')'"
            f"   FROM {LOG} s WHERE s.action = 'apply-started' AND NOT EXISTS ("
            f"     SELECT 1 FROM {LOG} e WHERE e.id > s.id AND e.source = s.source"
            "        AND e.version = s.version AND e.action <> 'apply-started')"
            " RETURNING source, version, name",
            (self.who,),
        ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def audit_log(self, limit: int) -> list[dict[str, Any]]:
        if not self._exists(LOG):
            return []
        cur = self.conn.execute(  # a start is shown only while it has no outcome
            f"SELECT at, action, source, version, name, who, db_user, detail FROM {LOG} s"
            " WHERE s.action <> 'apply-started' OR NOT EXISTS ("
            f"   SELECT 1 FROM {LOG} e WHERE e.id > s.id AND e.source = s.source"
            "      AND e.version = s.version AND e.action <> 'apply-started')"
            " ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _exists(self, table: str) -> bool:
        found = self.conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        return found is not None and found[0] is not None


# -- the files against the history ------------------------------------------------------------


class MigrationsBlocked(NselfError):
    """The files on disk disagree with the history; nothing was run."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].message, problems[0].hint)
        self.problems = problems


def check(items: list[Item], applied: list[Applied]) -> list[Problem]:
    """Where the files disagree with the history: interrupted runs, vanished or edited
    files, and new files that sort before applied ones of the same source."""
    known = {i.key: i for i in items}
    problems: list[Problem] = []
    for row in applied:
        item = known.get(row.key)
        if row.state == "running":
            problems.append(
                Problem(
                    "error",
                    f"{item.where if item else row.label}: a non-transactional migration was "
                    f"interrupted (started {row.applied_at:%Y-%m-%d %H:%M:%S %Z} by "
                    f"{row.applied_by})",
                    "check what it did, then record the outcome with "
                    "`nself db migrate repair --interrupted applied|pending --yes`",
                )
            )
        elif item is None:
            where = (
                f"migrations/{row.label}/up.sql"
                if row.source == PROJECT
                else f"plugin {row.source} migration {row.label}"
            )
            problems.append(
                Problem(
                    "error",
                    f"{where} was applied on {row.applied_at:%Y-%m-%d %H:%M:%S %Z} but is gone",
                    "restore the file (git checkout), or forget it with "
                    "`nself db migrate repair --yes`",
                )
            )
        elif item.sha256 != row.sha256:
            problems.append(
                Problem(
                    "error",
                    f"{item.where} changed after it was applied "
                    f"(applied {row.sha256[:12]}, now {item.sha256[:12]})",
                    "undo the edit and add a new migration instead; if the edit is "
                    "deliberate, accept it with `nself db migrate repair --yes`",
                )
            )
    newest: dict[str, tuple[int, str]] = {}
    for row in applied:
        key = version_key(row.version)
        if row.source not in newest or key > newest[row.source]:
            newest[row.source] = key
    applied_keys = {r.key for r in applied}
    for item in items:
        if item.key in applied_keys or item.source not in newest:
            continue
        if version_key(item.version) < newest[item.source]:
            problems.append(
                Problem(
                    "error",
                    f"{item.where} is new but sorts before migrations already applied "
                    f"(newest applied: {newest[item.source][1]})",
                    "rename it to a version after the newest applied one "
                    "(`nself db migrate create` does this)",
                )
            )
    return problems
