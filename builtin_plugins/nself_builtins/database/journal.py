"""Restores that survive a crash: runs, marks on the databases nself creates, and settling.

*Runs.* A restore or verify holds a session advisory lock ``(RUN_CLASS, key)`` on its
connection to the maintenance database for as long as it works. The server drops the lock
when the process dies (``kill -9`` included), so any other nself can tell a live run from
an interrupted one by looking at ``pg_locks``.

*Marks.* Every database nself creates carries its run's key in its name
(``<db>__restoring_<key>``, ``nself_verify_<key>``) and a comment ``nself:{json}`` that is
the journal of the swap: its kind, the database it is for, the backup, the phase, and
whether the run closed the live database's connections. Each step of the swap changes the
catalog and the mark in one transaction (PostgreSQL renames databases and changes their
comments transactionally), so the mark always says what state the databases are in.
The previous database a restore keeps is marked too (``<db>__pre_restore_<time>``).

*Settling* (``settle``): at the start of every ``nself db`` command, ``nself doctor`` and
``nself health``, an interrupted restore is finished or undone. Before the swap committed
it is undone (the live database is reopened, the incoming copy, which never held live
data, is dropped); after it, the swap is complete and only its remaining step (pg_cron's
jobs) is redone. Scratch databases of dead runs are dropped. Nothing else is ever dropped
without the user's ``--yes``: not a database without nself's mark, not a kept previous
database, not a live run's database.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from .transport import Transport

MARK = "nself:"
RUN_CLASS = 0x6E730001  # advisory lock classes: "ns" + 1 (a run), + 2 (a target's restore),
TARGET_CLASS = 0x6E730002  # + 3 (the cluster's roles, while a verify's or a restore's
ROLES_CLASS = 0x6E730003  # own are made, and a verify's used and dropped)
NAME_BYTES = 63  # PostgreSQL truncates longer identifiers
INCOMING = re.compile(r"^(?P<prefix>.*)__restoring_(?P<run>[0-9a-f]{8})$")
SCRATCH = re.compile(r"^nself_verify_(?P<run>[0-9a-f]{8})$")
LEGACY_OLD = "__nself_old"  # the previous database of an older nself's interrupted swap
LEGACY_INCOMING = "__nself_restore"
Say = Callable[[str], None]
KILL_AT = "NSELF_TEST_KILL_AT"  # fault injection for the tests: SIGKILL at that step


def checkpoint(step: str) -> None:
    """A named step of a restore; the tests kill nself here (``NSELF_TEST_KILL_AT``)."""
    if os.environ.get(KILL_AT) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def fit(prefix: str, suffix: str) -> str:
    """``prefix + suffix`` cut (in the prefix, on a character) to PostgreSQL's 63 bytes."""
    room = NAME_BYTES - len(suffix.encode())
    cut = prefix.encode()[:room].decode("utf-8", "ignore")
    return cut + suffix


def incoming_name(target: str, run: int) -> str:
    return fit(target, f"__restoring_{run:08x}")


def kept_name(target: str, when: datetime) -> str:
    return fit(target, "__pre_restore_" + when.strftime("%Y%m%d%H%M%S"))


def scratch_name(run: int) -> str:
    return f"nself_verify_{run:08x}"


@dataclass
class Mark:
    """nself's journal entry on a database it created (or kept)."""

    kind: str  # incoming | previous | scratch | role (one a verify created)
    run: int
    target: str = ""
    backup: str = ""
    phase: str = ""  # incoming: restoring, verified, closing; previous: kept
    closed: bool = False  # the run closed the live database's connections
    comment: str | None = None  # the live database's own comment, carried over by the swap
    bound: bool = False  # pg_cron's entries still to restore into the target
    by: str = ""
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def text(self) -> str:
        return MARK + json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, comment: str | None) -> Mark | None:
        if not comment or not comment.startswith(MARK):
            return None
        try:
            data = json.loads(comment[len(MARK) :])
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return None


@dataclass
class Database:
    name: str
    allow: bool
    comment: str | None
    size: int = 0

    @property
    def mark(self) -> Mark | None:
        return Mark.parse(self.comment)


def _ident(name: str) -> Any:
    from psycopg import sql

    return sql.Identifier(name)


def databases(conn: psycopg.Connection[Any]) -> dict[str, Database]:
    """The cluster's databases (without their size: that walks their files)."""
    rows = conn.execute(
        "SELECT datname, datallowconn, shobj_description(oid, 'pg_database')"
        " FROM pg_database WHERE NOT datistemplate"
    ).fetchall()
    return {r[0]: Database(r[0], bool(r[1]), r[2]) for r in rows}


def set_mark(conn: psycopg.Connection[Any], name: str, mark: Mark | str | None) -> None:
    from psycopg import sql

    text = mark.text() if isinstance(mark, Mark) else mark
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            _ident(name), sql.Literal(text) if text is not None else sql.SQL("NULL")
        )
    )


def set_role_mark(conn: psycopg.Connection[Any], role: str, mark: Mark) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(_ident(role), sql.Literal(mark.text())))


def drop_dead_roles(conn: psycopg.Connection[Any], live: set[int]) -> list[str]:
    """Drop the roles a verify created for its scratch copy and then could not drop (it was
    killed): marked by a run that is no longer alive. One that owns or holds anything now
    stays (DROP ROLE refuses), and so does one given a login, an attribute or a membership
    since (someone took it over): nself drops only what it created and left as it was."""
    import psycopg
    from psycopg import sql

    rows = conn.execute(  # still as a verify made it: no login, no attribute, no membership
        "SELECT rolname, shobj_description(oid, 'pg_authid') FROM pg_roles r"
        " WHERE shobj_description(oid, 'pg_authid') LIKE %s AND NOT r.rolcanlogin"
        " AND NOT r.rolsuper AND NOT r.rolcreaterole AND NOT r.rolcreatedb"
        " AND NOT r.rolreplication AND NOT r.rolbypassrls"
        " AND NOT EXISTS (SELECT 1 FROM pg_auth_members m"
        " WHERE m.member = r.oid OR m.roleid = r.oid)",
        (MARK + "%",),
    ).fetchall()
    gone: list[str] = []
    for role, comment in rows:
        mark = Mark.parse(comment)
        if mark is None or mark.kind != "role" or mark.run in live:
            continue
        try:
            conn.execute(sql.SQL("DROP ROLE {}").format(_ident(role)))
        except psycopg.Error:
            continue
        gone.append(role)
    return gone


def allow_connections(conn: psycopg.Connection[Any], name: str, allow: bool) -> None:
    from psycopg import sql

    conn.execute(
        sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
            _ident(name), sql.SQL("true" if allow else "false")
        )
    )


def rename(conn: psycopg.Connection[Any], old: str, new: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_ident(old), _ident(new)))


def drop(conn: psycopg.Connection[Any], name: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_ident(name)))


# Sessions this role may end (PostgreSQL's rule for pg_terminate_backend): a superuser any;
# otherwise those of roles it is a member of, or any with pg_signal_backend, never a
# superuser's. Asking to end another one is an error that would stop the whole restore.
_MAY_END = """
 (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
 OR (NOT coalesce((SELECT rolsuper FROM pg_roles r WHERE r.oid = a.usesysid), false)
     AND (pg_has_role(a.usesysid, 'MEMBER') OR pg_has_role('pg_signal_backend', 'MEMBER')))
"""


def terminate(conn: psycopg.Connection[Any], name: str) -> None:
    """Close every session of ``name`` this role may end (clients and background workers
    such as pg_cron's); the others are named by ``holders`` when they stay."""
    conn.execute(
        "SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a"
        f" WHERE a.datname = %s AND a.pid <> pg_backend_pid() AND ({_MAY_END})",
        (name,),
    )


def sessions(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    ).fetchone()
    return int(row[0]) if row else 0


def holders(conn: psycopg.Connection[Any], name: str) -> str:
    """The sessions of ``name`` that are still there, for a message (role, application)."""
    rows = conn.execute(
        "SELECT coalesce(a.usename, a.backend_type), nullif(a.application_name, ''),"
        f" ({_MAY_END}) FROM pg_stat_activity a"
        " WHERE a.datname = %s AND a.pid <> pg_backend_pid() ORDER BY a.pid LIMIT 5",
        (name,),
    ).fetchall()
    return ", ".join(
        f"{user}" + (f" ({app})" if app else "") + ("" if may else " (this role may not end it)")
        for user, app, may in rows
    )


class Run:
    """One nself run that creates databases: its key and its lock (held while it works)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.key = secrets.randbelow(0x7FFF_FFFF) + 1
        self._admin: psycopg.Connection[Any] | None = None
        self.by = _who()

    @property
    def admin(self) -> psycopg.Connection[Any]:
        assert self._admin is not None, "use the run as a context manager"
        return self._admin

    def __enter__(self) -> Run:
        self._admin = self.transport.connect(dbname="postgres", autocommit=True)
        self._admin.execute("SELECT pg_advisory_lock(%s, %s)", (RUN_CLASS, self.key))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._admin is not None and not self._admin.closed:
            self._admin.close()  # the server releases the run's locks

    def mark(self, kind: str, **fields: Any) -> Mark:
        return Mark(kind=kind, run=self.key, by=self.by, **fields)

    def lock_target(self, target: str) -> bool:
        row = self.admin.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (TARGET_CLASS, target)
        ).fetchone()
        return bool(row and row[0])

    @contextlib.contextmanager
    def roles(self, say: Say = lambda _: None) -> Iterator[None]:
        """Hold the cluster's roles: the roles a verify makes for its scratch copy exist
        only while it holds them. A restore that looked for its roles then would take a
        verify's bare role for the backup's own (and lose it when the verify drops it)."""
        got = self.admin.execute("SELECT pg_try_advisory_lock(%s, 0)", (ROLES_CLASS,)).fetchone()
        if not (got and got[0]):
            say("waiting for another nself's verify to drop the roles it made for its copy")
            self.admin.execute("SELECT pg_advisory_lock(%s, 0)", (ROLES_CLASS,))
        try:
            yield
        finally:
            if not self.admin.closed:
                self.admin.execute("SELECT pg_advisory_unlock(%s, 0)", (ROLES_CLASS,))

    def unlock_target(self, target: str) -> None:
        if not self.admin.closed:
            self.admin.execute(
                "SELECT pg_advisory_unlock(%s, hashtext(%s))", (TARGET_CLASS, target)
            )


def live_runs(conn: psycopg.Connection[Any]) -> set[int]:
    """Keys of the nself runs working on this cluster right now."""
    rows = conn.execute(
        "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid::bigint = %s AND objsubid = 2"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (RUN_CLASS,),
    ).fetchall()
    return {int(r[0]) for r in rows}


def _who() -> str:
    from .migrations.history import who

    return who()


def _run_of(db: Database) -> int | None:
    mark = db.mark
    if mark is not None:
        return mark.run
    match = INCOMING.match(db.name) or SCRATCH.match(db.name)
    return int(match.group("run"), 16) if match else None


def _empty(run: Run, name: str) -> bool:
    """Whether database ``name`` holds no relation of its own (as freshly created)."""
    from nself_sdk import NselfError

    try:
        with run.transport.connect(dbname=name, autocommit=True) as conn:
            row = conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND n.nspname NOT LIKE 'pg\\_%')"
            ).fetchone()
    except NselfError:
        return False  # cannot look inside: leave it alone
    return bool(row and row[0])


def _incoming_for(db: Database, target: str) -> bool:
    """Whether ``db`` is an unfinished copy of a restore of ``target``: its name is the one
    nself gives it (a comment alone, which a database's owner may write, is not enough)."""
    match = INCOMING.match(db.name)
    if match is None or db.name != incoming_name(target, int(match.group("run"), 16)):
        return False
    mark = db.mark  # none: killed between CREATE DATABASE and its mark
    return mark is None or (mark.kind == "incoming" and mark.target == target)


def settle(
    run: Run,
    target: str,
    say: Say = lambda _: None,
    finish_bound: Callable[[Mark], None] | None = None,
    staged: bool = False,
) -> list[str]:
    """Finish or undo interrupted restores of ``target``; drop scratch databases of dead
    runs (and, with ``staged``, files they copied into the postgres service). Returns what
    it found and did (also told through ``say``)."""
    conn = run.admin
    notes: list[str] = []
    if staged:
        from .transport import clean_staged

        gone = clean_staged(run.transport, live_runs(conn) | {run.key})
        if gone:
            notes.append(f"removed {len(gone)} staged file(s) of interrupted runs")

    def note(text: str) -> None:
        notes.append(text)
        say(text)

    if not run.lock_target(target):
        note(f"a restore of {target} is running in another nself: left alone")
        return notes
    try:
        live = live_runs(conn) - {run.key}
        found = databases(conn)
        for db in found.values():
            owner = _run_of(db)
            if owner is None or owner in live or owner == run.key or db.name == target:
                continue  # the live database is never settled away, whatever its comment says
            mark = db.mark
            if mark is None and not _empty(run, db.name):
                # nself marks its databases right after creating them, before anything is
                # put in: one with this name and no mark that holds data is someone else's
                note(f"{db.name} has the name of nself's databases but no mark: left alone")
                continue
            if SCRATCH.match(db.name) and (mark is None or mark.kind == "scratch"):
                drop(conn, db.name)
                note(f"dropped {db.name}, the scratch database of an interrupted verify")
            elif _incoming_for(db, target):
                live_db = found.get(target)
                if mark is not None and mark.closed and live_db is not None and not live_db.allow:
                    allow_connections(conn, target, True)
                    live_db.allow = True
                drop(conn, db.name)
                what = f"of {mark.backup} " if mark is not None and mark.backup else ""
                note(
                    f"an interrupted restore {what}into {target} was undone: {target} is as it"
                    f" was before it (open again), and its unfinished copy {db.name} was dropped"
                )
            elif (
                mark is not None
                and mark.kind == "previous"
                and mark.target == target
                and mark.bound
                and finish_bound is not None
            ):
                from nself_sdk import NselfError

                try:
                    finish_bound(mark)
                except NselfError as exc:  # it cannot be redone: say so, never block restores
                    note(
                        f"an interrupted restore of {mark.backup} into {target} could not"
                        f" restore pg_cron's jobs: {exc.message}; recreate them, or restore a"
                        " backup again"
                    )
                else:
                    note(f"finished an interrupted restore of {mark.backup}: pg_cron's jobs")
                mark.bound = False  # never again: a later restore must not get these jobs
                set_mark(conn, db.name, mark)
        roles = drop_dead_roles(conn, live | {run.key})
        if roles:
            note(f"dropped {', '.join(roles)}: role(s) an interrupted verify created")
        notes += _legacy(conn, target, found, say)
    finally:
        run.unlock_target(target)
    return notes


def _legacy(
    conn: psycopg.Connection[Any], target: str, found: dict[str, Database], say: Say
) -> list[str]:
    """The swap of an older nself (``<db>__nself_old``, ``<db>__nself_restore``)."""
    notes = []
    old = fit(target, LEGACY_OLD)
    incoming = fit(target, LEGACY_INCOMING)
    if target not in found and old in found:
        rename(conn, old, target)
        allow_connections(conn, target, True)
        notes.append(
            f"{target} was missing after an interrupted restore: its data was in {old},"
            f" renamed back to {target} and open again"
        )
    elif target in found and not found[target].allow and incoming in found:
        allow_connections(conn, target, True)
        notes.append(f"{target} was left closed by an interrupted restore: open again")
    for text in notes:
        say(text)
    return notes


def kept(conn: psycopg.Connection[Any], target: str) -> list[Database]:
    """Previous databases kept by restores of ``target`` (oldest first), older nself's too."""
    found = databases(conn)
    legacy = fit(target, LEGACY_OLD)
    out = []
    for db in found.values():
        mark = db.mark
        if db.name == target:
            continue  # never the live database, whatever its comment says
        if (mark is not None and mark.kind == "previous" and mark.target == target) or (
            db.name == legacy and target in found
        ):
            row = conn.execute("SELECT pg_database_size(%s)", (db.name,)).fetchone()
            db.size = int(row[0]) if row and row[0] is not None else 0
            out.append(db)
    return sorted(out, key=lambda d: d.mark.at if d.mark else "")


def status(conn: psycopg.Connection[Any], target: str) -> list[str]:
    """What an interrupted restore left, read-only (for ``nself doctor``'s message)."""
    found = databases(conn)
    live = live_runs(conn)
    problems = []
    if target in found and not found[target].allow:
        problems.append(f"{target} does not accept connections")
    if target not in found:
        problems.append(f"{target} does not exist")
    for db in found.values():
        owner = _run_of(db)
        if owner is not None and owner not in live and _incoming_for(db, target):
            problems.append(f"{db.name} is the unfinished copy of an interrupted restore")
    return problems


def settle_interrupted(
    transport: Transport, say: Say, finisher: Callable[[Run], Callable[[Mark], None]] | None = None
) -> list[str]:
    """``settle`` for any command: quiet when the server cannot be reached (the command
    reports that itself). ``finisher(run)`` gives what redoes pg_cron's step (it needs the
    backup folder)."""
    import psycopg

    from nself_sdk import NselfError

    try:
        with Run(transport) as run:
            finish = finisher(run) if finisher is not None else None
            return settle(run, transport.dbname, say, finish)
    except NselfError:
        return []
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        say(f"could not check for an interrupted restore: {first}")
        return []
