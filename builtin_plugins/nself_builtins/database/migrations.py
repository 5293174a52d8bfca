"""Checksummed, locked, transactional schema migrations.

Files: ``migrations/<version>_<name>/up.sql`` (and ``down.sql``) in the project, plus the
migrations plugins contribute through ``contribute_migrations``. Every applied migration
has a row in ``np_schema_migrations`` (version, name, sha256, applied time, who); the
runner refuses to go on when an applied file changed or vanished, or when a new file
sorts before applied ones of the same source. ``repair`` is the explicit, audited way
out; every action is logged in ``np_schema_migrations_log``.
"""

from __future__ import annotations

import getpass
import hashlib
import itertools
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nself_sdk import Migration, NselfError, Problem, UsageError

from .transport import Transport

if TYPE_CHECKING:
    import psycopg

PROJECT = "project"
HISTORY = "public.np_schema_migrations"
LOG = "public.np_schema_migrations_log"
# pg_advisory_lock key: "nself-mg" as a 64-bit number; advisory locks are per database.
LOCK_KEY = int.from_bytes(b"nself-mg", "big") & 0x7FFF_FFFF_FFFF_FFFF
NO_TRANSACTION = re.compile(r"^\s*--\s*nself:\s*no-transaction\b", re.IGNORECASE | re.MULTILINE)
DIR_NAME = re.compile(r"^(\d+)_([A-Za-z0-9][A-Za-z0-9_]*)$")
NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")

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


def who() -> str:
    """The person (and machine) running the command, for the history and the audit log."""
    try:
        user = getpass.getuser()
    except Exception:  # no name for this uid (containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Item:
    """One migration known to this run: a project file or a plugin's contribution."""

    source: str
    version: str
    name: str
    up_sql: str
    down_sql: str | None
    transactional: bool
    where: str  # what messages call it: a file path or "plugin X migration V"
    depends_on: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.version)

    @property
    def sha256(self) -> str:
        return sha256(self.up_sql)

    @property
    def label(self) -> str:
        prefix = "" if self.source == PROJECT else f"{self.source}:"
        return f"{prefix}{self.version}_{self.name}"


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


def version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (1 << 62, version)


# -- discovery --------------------------------------------------------------------------------


def project_migrations(project_dir: Path) -> list[Item]:
    root = project_dir / "migrations"
    if not root.is_dir():
        return []
    items: list[Item] = []
    seen: dict[str, Path] = {}
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        rel = folder.relative_to(project_dir)
        match = DIR_NAME.match(folder.name)
        if not match:
            raise NselfError(
                f"{rel}: a migration folder must be named <version>_<name>",
                "create migrations with `nself db migrate create NAME`",
            )
        version, name = match.groups()
        if int(version) in {int(v) for v in seen}:
            other = next(p for v, p in seen.items() if int(v) == int(version))
            raise NselfError(
                f"{rel} and {other.relative_to(project_dir)} have the same version {version}",
                "give one of them a new version (rename the folder)",
            )
        seen[version] = folder
        up = folder / "up.sql"
        if not up.is_file():
            raise NselfError(f"{rel}/up.sql is missing", "every migration needs an up.sql")
        up_sql = up.read_text(encoding="utf-8")
        down = folder / "down.sql"
        items.append(
            Item(
                source=PROJECT,
                version=version,
                name=name,
                up_sql=up_sql,
                down_sql=down.read_text(encoding="utf-8") if down.is_file() else None,
                transactional=not NO_TRANSACTION.search(up_sql),
                where=f"{rel}/up.sql",
            )
        )
    return items


def plugin_migrations(contributed: Iterable[Migration]) -> list[Item]:
    items = []
    for m in contributed:
        if m.source == PROJECT:
            raise NselfError(
                f"a plugin migration ({m.version} {m.name}) uses the reserved source 'project'",
                "set Migration.source to the plugin's name",
            )
        items.append(
            Item(
                source=m.source,
                version=m.version,
                name=m.name,
                up_sql=m.up_sql,
                down_sql=m.down_sql,
                transactional=m.transactional and not NO_TRANSACTION.search(m.up_sql),
                where=f"plugin {m.source} migration {m.version}_{m.name}",
                depends_on=tuple(m.depends_on),
            )
        )
    return items


def ordered(items: list[Item]) -> list[Item]:
    """Dependency order: each source in version order, ``depends_on`` across sources.

    ``depends_on`` entries name ``source`` (all of it), ``source:version`` or ``version``
    (same source). Ties are broken by version, then source, so the order is stable.
    """
    by_key = {i.key: i for i in items}
    if len(by_key) != len(items):
        dup = next(i for i in items if sum(j.key == i.key for j in items) > 1)
        raise NselfError(f"{dup.where}: version {dup.version} is used twice in {dup.source}")
    by_source: dict[str, list[Item]] = {}
    for item in sorted(items, key=lambda i: version_key(i.version)):
        by_source.setdefault(item.source, []).append(item)
    needs: dict[tuple[str, str], set[tuple[str, str]]] = {k: set() for k in by_key}
    for chain in by_source.values():
        for before, after in itertools.pairwise(chain):
            needs[after.key].add(before.key)
    for item in items:
        for dep in item.depends_on:
            src, _, ver = dep.partition(":") if ":" in dep else ("", "", dep)
            if src and ver:
                targets = [(src, ver)]
            elif dep in by_source:
                targets = [by_source[dep][-1].key]
            else:
                targets = [(item.source, dep)]
            for target in targets:
                if target not in by_key:
                    raise NselfError(
                        f"{item.where} depends on {dep}, which no installed plugin provides",
                        "install the plugin it needs, or fix depends_on",
                    )
                needs[item.key].add(target)
    result: list[Item] = []
    done: set[tuple[str, str]] = set()
    waiting = sorted(items, key=lambda i: (version_key(i.version), i.source))
    while waiting:
        ready = next((i for i in waiting if needs[i.key] <= done), None)
        if ready is None:
            raise NselfError(
                "plugin migrations depend on each other in a cycle: "
                + ", ".join(i.label for i in waiting[:5]),
                "fix depends_on",
            )
        result.append(ready)
        done.add(ready.key)
        waiting.remove(ready)
    return result


# -- the checks -------------------------------------------------------------------------------


class MigrationsBlocked(NselfError):
    """The files on disk disagree with the history; nothing was run."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].message, problems[0].hint)
        self.problems = problems


def check(items: list[Item], applied: list[Applied]) -> list[Problem]:
    known = {i.key: i for i in items}
    problems: list[Problem] = []
    for row in applied:
        item = known.get(row.key)
        label = row.version + "_" + row.name
        if row.state == "running":
            where = item.where if item else label
            problems.append(
                Problem(
                    "error",
                    f"{where}: a non-transactional migration was interrupted "
                    f"(started {row.applied_at:%Y-%m-%d %H:%M:%S %Z} by {row.applied_by})",
                    "check what it did, then record the outcome with "
                    "`nself db migrate repair --interrupted applied|pending --yes`",
                )
            )
        elif item is None:
            where = (
                f"migrations/{label}/up.sql"
                if row.source == PROJECT
                else f"plugin {row.source} migration {label}"
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


# -- the runner -------------------------------------------------------------------------------


@dataclass
class Outcome:
    applied: list[Item] = field(default_factory=list)
    reverted: list[Item] = field(default_factory=list)
    pending: list[Item] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)


Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class Runner:
    """Runs migrations against one database reached through a ``Transport``."""

    def __init__(
        self,
        transport: Transport,
        items: list[Item],
        lock_timeout: float = 60.0,
        say: Say = _quiet,
    ) -> None:
        self.transport = transport
        self.items = ordered(items)
        self.lock_timeout = lock_timeout
        self.say = say
        self.who = who()

    # -- connection, lock, tables ------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        conn = self.transport.connect(autocommit=True)
        # A killed runner must not leave its migration running on the server (holding the
        # lock): with this the server checks the client socket and aborts the statement.
        self._session_settings(conn)
        return conn

    @staticmethod
    def _session_settings(conn: psycopg.Connection[Any]) -> None:
        if conn.info.server_version >= 140000:
            conn.execute("SET client_connection_check_interval = '1s'")

    def _lock(self, conn: psycopg.Connection[Any]) -> None:
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
            if got and got[0]:
                return
            if time.monotonic() >= deadline:
                raise NselfError(
                    "another migration run holds the migration lock"
                    f"{self._holder(conn)}; gave up after {self.lock_timeout:g}s",
                    "wait for it to finish (or stop it), then run the command again",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    @staticmethod
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

    @staticmethod
    def _unlock(conn: psycopg.Connection[Any]) -> None:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))

    @staticmethod
    def _ensure_tables(conn: psycopg.Connection[Any]) -> None:
        conn.execute(SCHEMA_SQL)

    @staticmethod
    def read_applied(conn: psycopg.Connection[Any]) -> list[Applied]:
        exists = conn.execute("SELECT to_regclass(%s)", (HISTORY,)).fetchone()
        if not exists or exists[0] is None:
            return []
        rows = conn.execute(
            f"""SELECT source, version, name, sha256, state, applied_at, applied_by, transactional
                  FROM {HISTORY} ORDER BY seq"""
        ).fetchall()
        return [Applied(*row) for row in rows]

    def _log(
        self,
        conn: psycopg.Connection[Any],
        action: str,
        source: str,
        version: str,
        name: str,
        digest: str | None,
        detail: str = "",
    ) -> None:
        conn.execute(
            f"INSERT INTO {LOG} (action, source, version, name, sha256, who, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (action, source, version, name, digest, self.who, detail),
        )

    # -- read-only views ------------------------------------------------------------------------
    def status(self) -> tuple[list[dict[str, Any]], list[Problem]]:
        with self._connect() as conn:
            applied = self.read_applied(conn)
        problems = check(self.items, applied)
        by_key = {a.key: a for a in applied}
        rows: list[dict[str, Any]] = []
        for item in self.items:
            row = by_key.get(item.key)
            if row is None:
                state = "pending"
            elif row.state == "running":
                state = "interrupted"
            else:
                state = "applied" if row.sha256 == item.sha256 else "changed"
            rows.append(
                {
                    "source": item.source,
                    "version": item.version,
                    "name": item.name,
                    "state": state,
                    "applied_at": row.applied_at.isoformat() if row else None,
                    "applied_by": row.applied_by if row else None,
                    "transactional": item.transactional,
                }
            )
        known = {i.key for i in self.items}
        for row in applied:
            if row.key not in known:
                rows.append(
                    {
                        "source": row.source,
                        "version": row.version,
                        "name": row.name,
                        "state": "missing",
                        "applied_at": row.applied_at.isoformat(),
                        "applied_by": row.applied_by,
                        "transactional": row.transactional,
                    }
                )
        return rows, problems

    def pending(self, to: str | None = None) -> list[Item]:
        with self._connect() as conn:
            applied = self.read_applied(conn)
        problems = check(self.items, applied)
        if problems:
            raise MigrationsBlocked(problems)
        return self._select_pending(applied, to)

    def _select_pending(self, applied: list[Applied], to: str | None) -> list[Item]:
        done = {a.key for a in applied}
        todo = [i for i in self.items if i.key not in done]
        if to is not None:
            matching = [i for i in self.items if i.version == to or i.label == to]
            if not matching:
                raise UsageError(f"no migration has version {to}", "see `nself db migrate status`")
            stop = self.items.index(matching[0])
            todo = [i for i in todo if self.items.index(i) <= stop]
        return todo

    # -- up -----------------------------------------------------------------------------------
    def up(self, to: str | None = None) -> Outcome:
        outcome = Outcome()
        with self._connect() as conn:
            self._lock(conn)
            try:
                self._ensure_tables(conn)
                applied = self.read_applied(conn)  # re-read under the lock
                problems = check(self.items, applied)
                if problems:
                    raise MigrationsBlocked(problems)
                todo = self._select_pending(applied, to)
                for n, item in enumerate(todo, start=1):
                    self._apply(conn, item, durable=n == len(todo))
                    outcome.applied.append(item)
            finally:
                self._unlock(conn)
        return outcome

    def _apply(self, conn: psycopg.Connection[Any], item: Item, durable: bool = True) -> None:
        """Run one migration and record it, atomically when it is transactional.

        All but the last migration of a run commit without waiting for the WAL flush
        (``synchronous_commit = off``): a crash can then only lose whole migrations
        together with their history rows, never half of one, and the last, durable commit
        flushes every earlier one. It makes long runs several times faster.
        """
        psycopg = _psycopg()
        self.say(f"applying {item.label}" + ("" if item.transactional else " (no transaction)"))
        started = time.monotonic()
        record = (
            f"INSERT INTO {HISTORY} (source, version, name, sha256, transactional, state,"
            " applied_by, execution_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        )
        try:
            if item.transactional:
                with conn.transaction():
                    if not durable:
                        conn.execute("SET LOCAL synchronous_commit = off")
                    conn.execute(item.up_sql.encode("utf-8"))
                    if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
                        raise NselfError(
                            f"{item.where} ended the migration's transaction itself",
                            "remove BEGIN/COMMIT from the file: nself wraps each migration "
                            "in a transaction (or opt out with `-- nself:no-transaction`)",
                        )
                    elapsed = int((time.monotonic() - started) * 1000)
                    conn.execute(
                        record,
                        (
                            item.source,
                            item.version,
                            item.name,
                            item.sha256,
                            True,
                            "applied",
                            self.who,
                            elapsed,
                        ),
                    )
                    self._log(conn, "apply", item.source, item.version, item.name, item.sha256)
            else:
                conn.execute(
                    record,
                    (
                        item.source,
                        item.version,
                        item.name,
                        item.sha256,
                        False,
                        "running",
                        self.who,
                        None,
                    ),
                )
                for statement in split_statements(item.up_sql):
                    conn.execute(statement.encode("utf-8"))
                elapsed = int((time.monotonic() - started) * 1000)
                with conn.transaction():
                    conn.execute(
                        f"UPDATE {HISTORY} SET state = 'applied', execution_ms = %s,"
                        " applied_at = now() WHERE source = %s AND version = %s",
                        (elapsed, item.source, item.version),
                    )
                    self._log(conn, "apply", item.source, item.version, item.name, item.sha256)
        except psycopg.Error as exc:
            hint = (
                "the migration was rolled back: nothing of it was applied; fix the file and rerun"
                if item.transactional
                else "it ran without a transaction and is recorded as interrupted: check the "
                "database, then `nself db migrate repair --interrupted applied|pending --yes`"
            )
            raise NselfError(f"{item.where} failed: {_pg_message(exc)}", hint) from None
        finally:
            conn.execute("RESET ALL")
            self._session_settings(conn)

    # -- down ---------------------------------------------------------------------------------
    def down(self, steps: int = 1) -> Outcome:
        if steps < 1:
            raise UsageError("--steps must be at least 1")
        outcome = Outcome()
        by_key = {i.key: i for i in self.items}
        with self._connect() as conn:
            self._lock(conn)
            try:
                self._ensure_tables(conn)
                applied = self.read_applied(conn)
                problems = check(self.items, applied)
                if problems:
                    raise MigrationsBlocked(problems)
                targets = [by_key[a.key] for a in reversed(applied)][:steps]
                for item in targets:
                    if not (item.down_sql or "").strip():
                        raise NselfError(
                            f"{item.where}: there is no down.sql, so it cannot be reverted",
                            "write the down.sql, or restore a backup instead",
                        )
                for item in targets:
                    self.say(f"reverting {item.label}")
                    psycopg = _psycopg()
                    try:
                        with conn.transaction():
                            conn.execute((item.down_sql or "").encode("utf-8"))
                            conn.execute(
                                f"DELETE FROM {HISTORY} WHERE source = %s AND version = %s",
                                (item.source, item.version),
                            )
                            self._log(
                                conn, "revert", item.source, item.version, item.name, item.sha256
                            )
                    except psycopg.Error as exc:
                        raise NselfError(
                            f"down.sql of {item.where} failed: {_pg_message(exc)}",
                            "it was rolled back; the migration is still applied",
                        ) from None
                    finally:
                        conn.execute("RESET ALL")
                        self._session_settings(conn)
                    outcome.reverted.append(item)
            finally:
                self._unlock(conn)
        return outcome

    # -- repair -------------------------------------------------------------------------------
    def repair(self, apply: bool, interrupted: str | None = None, reason: str = "") -> list[str]:
        """Realign the history with the files; returns what it did (or would do)."""
        actions: list[str] = []
        known = {i.key: i for i in self.items}
        with self._connect() as conn:
            self._lock(conn)
            try:
                self._ensure_tables(conn)
                applied = self.read_applied(conn)
                plan: list[tuple[str, Applied, Item | None]] = []
                for row in applied:
                    item = known.get(row.key)
                    if row.state == "running":
                        if interrupted not in ("applied", "pending"):
                            raise UsageError(
                                f"{row.version}_{row.name} was interrupted: say what happened "
                                "with --interrupted applied (it completed) or pending (undone)"
                            )
                        plan.append((f"interrupted-{interrupted}", row, item))
                    elif item is None:
                        plan.append(("forget", row, None))
                    elif item.sha256 != row.sha256:
                        plan.append(("accept", row, item))
                for action, row, item in plan:
                    label = f"{row.version}_{row.name}" + (
                        "" if row.source == PROJECT else f" ({row.source})"
                    )
                    text = {
                        "forget": f"forget {label}: applied but its file is gone",
                        "accept": f"accept the edited {label} (sha256 {row.sha256[:12]} -> "
                        f"{item.sha256[:12] if item else ''})",
                        "interrupted-applied": f"mark the interrupted {label} as applied",
                        "interrupted-pending": f"mark the interrupted {label} as not applied",
                    }[action]
                    actions.append(text)
                    if not apply:
                        continue
                    with conn.transaction():
                        key = (row.source, row.version)
                        if action in ("forget", "interrupted-pending"):
                            conn.execute(
                                f"DELETE FROM {HISTORY} WHERE source = %s AND version = %s", key
                            )
                        elif action == "accept" and item is not None:
                            conn.execute(
                                f"UPDATE {HISTORY} SET sha256 = %s WHERE source = %s"
                                " AND version = %s",
                                (item.sha256, *key),
                            )
                        else:
                            conn.execute(
                                f"UPDATE {HISTORY} SET state = 'applied' WHERE source = %s"
                                " AND version = %s",
                                key,
                            )
                        digest = item.sha256 if item else row.sha256
                        detail = text + (f"; reason: {reason}" if reason else "")
                        self._log(
                            conn,
                            f"repair-{action}",
                            row.source,
                            row.version,
                            row.name,
                            digest,
                            detail,
                        )
            finally:
                self._unlock(conn)
        return actions

    def log(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._connect() as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (LOG,)).fetchone()
            if not exists or exists[0] is None:
                return []
            cur = conn.execute(
                f"SELECT at, action, source, version, name, who, db_user, detail FROM {LOG}"
                " ORDER BY id DESC LIMIT %s",
                (limit,),
            )
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _psycopg() -> Any:
    import psycopg

    return psycopg


def _pg_message(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(exc).strip().splitlines()[0]
    position = getattr(diag, "statement_position", None)
    return f"{primary} (at character {position})" if position else str(primary)


def split_statements(sql: str) -> list[str]:
    """Top-level statements of a non-transactional file (each runs on its own)."""
    import sqlparse

    out = []
    for statement in sqlparse.split(sql):
        stripped = sqlparse.format(statement, strip_comments=True).strip().rstrip(";").strip()
        if stripped:
            out.append(statement)
    return out


def create(project_dir: Path, name: str, now: datetime | None = None) -> Path:
    """Make ``migrations/<UTC timestamp>_<name>/`` with an up.sql and a down.sql."""
    clean = re.sub(r"[\s-]+", "_", name.strip().lower())
    if not NAME.match(clean):
        raise UsageError(
            f"invalid migration name {name!r}",
            "use letters, digits and underscores, e.g. add_users",
        )
    root = project_dir / "migrations"
    root.mkdir(parents=True, exist_ok=True)
    stamp = now or datetime.now(UTC)
    existing = [int(m.group(1)) for p in root.iterdir() if (m := DIR_NAME.match(p.name))]
    version = int(stamp.strftime("%Y%m%d%H%M%S"))
    if existing and version <= max(existing):
        version = max(existing) + 1
    folder = root / f"{version}_{clean}"
    folder.mkdir()
    (folder / "up.sql").write_text(
        f"-- {clean}: applied by `nself db migrate up`, inside one transaction.\n"
        "-- Add `-- nself:no-transaction` on its own line to run it without one\n"
        "-- (needed for CREATE INDEX CONCURRENTLY).\n\n"
    )
    (folder / "down.sql").write_text(f"-- Reverts {clean} (`nself db migrate down`).\n\n")
    return folder
