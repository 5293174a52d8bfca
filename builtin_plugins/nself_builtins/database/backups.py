"""Backups that are proven by restoring them, and restores that refuse bad backups.

A backup ``NAME`` (``backup-2026-05-01-02-00[-label].dump``) is four files in the
project's backup folder (mode 0700, files 0600):

* ``NAME``: custom-format ``pg_dump`` of the database, taken in an exported snapshot;
* ``NAME.globals.sql``: roles (``pg_dumpall --globals-only``);
* ``NAME.json``: the manifest, written last (label, size, sha256 of both files, PostgreSQL
  and nself versions, time, per-table row counts and a schema fingerprint taken in the
  *same* snapshot as the dump);
* ``NAME.verified.json``: written by ``verify`` after a successful scratch restore.

Every file is written to a temp name, fsynced and renamed; a backup without a manifest
does not exist.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nself_sdk import Config, NselfError, UsageError, nself_version

from .durable import clean_leftovers, file_sha256
from .durable import finish as _finish  # the underscored names: take() keeps its own words
from .durable import fsync_dir as _fsync_dir
from .durable import temp_in as _temp_in
from .durable import write_json as _write_json
from .transport import Transport

if TYPE_CHECKING:
    import psycopg

    from .target import Target

FORMAT = 1
SUFFIX = ".dump"
# The fields every manifest has and what each holds (a file on disk: any JSON may be there).
MANIFEST_TYPES = {
    "format": int,
    "name": str,
    "created": str,
    "size": int,
    "sha256": str,
    "globals_sha256": str,
    "database": str,
    "tables": dict,
}
REQUIRED = tuple(MANIFEST_TYPES)
Say = Callable[[str], None]
# Extensions whose objects live in one database only (pg_cron: cron.database_name).
DATABASE_BOUND = ("pg_cron",)

TABLES_SQL = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname NOT IN ('cron')
 ORDER BY 1, 2
"""

SCHEMA_SQL = """
SELECT format('column %I.%I.%I %s%s', n.nspname, c.relname, a.attname,
              format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN ' not null' END)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'cron')
   AND n.nspname NOT LIKE 'pg\\_%'
UNION ALL
SELECT format('index %s', indexdef) FROM pg_indexes
 WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'cron')
UNION ALL
SELECT format('constraint %I.%I %s', n.nspname, con.conname, pg_get_constraintdef(con.oid))
  FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'cron')
UNION ALL
SELECT format('function %I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'cron')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT format('extension %I', extname) FROM pg_extension
 WHERE extname NOT IN ('plpgsql', 'pg_cron')
"""


# -- the folder -------------------------------------------------------------------------------


# In the backup folder: dumps hold every row and role, base backups every file.
GITIGNORE = "# nself: backups stay out of version control\n*\n"


@dataclass
class Store:
    root: Path

    @classmethod
    def for_project(cls, project: Path, config: Config) -> Store:
        return cls(project / config.text("BACKUP_DIR", "backups"))

    def ensure(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        ignore = self.root / ".gitignore"
        if not ignore.exists():  # dumps hold every row and role: never committed
            ignore.write_text(GITIGNORE)
        return self.root

    def dump(self, name: str) -> Path:
        return self.root / name

    def globals_file(self, name: str) -> Path:
        return self.root / f"{name}.globals.sql"

    def manifest_file(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def verified_file(self, name: str) -> Path:
        return self.root / f"{name}.verified.json"

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.name[: -len(".json")] for p in self.root.glob(f"*{SUFFIX}.json")]
        return sorted(found, key=lambda n: self._created(n), reverse=True)

    def _created(self, name: str) -> str:
        try:
            return str(json.loads(self.manifest_file(name).read_text())["created"])
        except (OSError, ValueError, KeyError, TypeError):
            return ""

    def resolve_name(self, name: str | None) -> str:
        names = self.names()
        if name is None:
            if not names:
                raise NselfError("there are no backups yet", "take one with `nself db backup`")
            return names[0]
        base = Path(name).name
        for candidate in (base, base + SUFFIX) if base not in ("", ".", "..") else ():
            if self.manifest_file(candidate).exists() or self.dump(candidate).exists():
                return candidate
        raise NselfError(f"no backup named {name} in {self.root}", "see `nself db backup list`")

    def verification(self, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.verified_file(name).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def listing(self) -> list[dict[str, Any]]:
        rows = []
        for name in self.names():
            try:
                manifest = json.loads(self.manifest_file(name).read_text())
            except (OSError, ValueError):
                manifest = {}
            record = self.verification(name)
            verified = failed = None
            if record and record.get("sha256") in (manifest.get("sha256"), None):
                when = str(record.get("at", ""))[:19]
                if record.get("ok") and record.get("sha256"):
                    verified = f"verified {when}"
                elif not record.get("ok"):  # a damaged file fails before its hash is known
                    failed = f"VERIFY FAILED {when}: {record.get('error') or 'unknown error'}"
            rows.append(
                {
                    "name": name,
                    "label": manifest.get("label"),
                    "created": manifest.get("created", ""),
                    "size": manifest.get("size", 0),
                    "postgres_version": manifest.get("postgres_version"),
                    "verified": verified,
                    "verify_failed": failed,
                }
            )
        return rows

    def new_name(self, label: str | None, now: datetime) -> str:
        stem = "backup-" + now.strftime("%Y-%m-%d-%H-%M")
        if label:
            clean = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.")
            if not clean:
                raise UsageError(f"invalid backup label {label!r}", "use letters, digits, . _ -")
            stem += "-" + clean
        name, n = stem + SUFFIX, 2
        while self.manifest_file(name).exists() or self.dump(name).exists():
            name, n = f"{stem}-{n}{SUFFIX}", n + 1
        return name


# -- helpers ----------------------------------------------------------------------------------


def untimed(conn: psycopg.Connection[Any]) -> None:
    """No time limit for this session, whatever the database sets (a ``statement_timeout``
    would cancel counting a large table; an ``idle_in_transaction_session_timeout`` would
    end the session holding a backup's snapshot while pg_dump runs), as pg_dump and
    pg_restore do for theirs."""
    for setting in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"):
        conn.execute(f"SET {setting} = 0")
    if conn.info.transaction_status != conn.info.transaction_status.IDLE:
        conn.commit()


def snapshot_facts(
    conn: psycopg.Connection[Any], known: dict[str, int] | None = None
) -> tuple[dict[str, int], list[str]]:
    """Per-table row counts and the schema lines, read in the connection's snapshot.

    Counting runs beside ``pg_dump`` (one scan each: no parallel workers, and no JIT
    compiling a plan that runs once, to compete with it for the CPU). ``known``: counts the
    server already vouches for (``restored_counts``); those tables are not scanned again."""
    from psycopg import sql

    conn.execute("SET max_parallel_workers_per_gather = 0")
    conn.execute("SET jit = off")
    counts: dict[str, int] = {}
    for schema, table in conn.execute(TABLES_SQL).fetchall():
        key = f"{schema}.{table}"
        if known is not None and key in known:
            counts[key] = known[key]
            continue
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = conn.execute(query).fetchone()
        counts[key] = int(row[0]) if row else 0
    conn.execute("RESET max_parallel_workers_per_gather")
    conn.execute("RESET jit")
    return counts, schema_of(conn)


def schema_of(conn: psycopg.Connection[Any], own_path: bool = False) -> list[str]:
    """The schema lines. Definitions name a schema only when it is not on the search_path,
    so they are read with PostgreSQL's default path, not the database's own setting (a
    verify's scratch database has none); ``own_path``: with the database's own, as
    manifests written before were."""
    if own_path:
        return sorted(str(r[0]) for r in conn.execute(SCHEMA_SQL).fetchall())
    conn.execute('SET search_path TO "$user", public')
    try:
        return sorted(str(r[0]) for r in conn.execute(SCHEMA_SQL).fetchall())
    finally:
        conn.execute("RESET search_path")


def restored_counts(conn: psycopg.Connection[Any], expected: dict[str, int]) -> dict[str, int]:
    """The tables of a database only a restore wrote into whose committed-row count, as the
    server keeps it (``pg_stat_user_tables.n_live_tup``: inserts of committed transactions),
    equals the manifest's. Any other table is counted row by row (``snapshot_facts``): a
    figure that differs is never trusted, nor one that an ANALYZE or a VACUUM (autovacuum
    works in the new database while pg_restore fills it) replaced by its own estimate."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # pg_restore's sessions report their counts on exit
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
        if not row or not row[0]:
            break
        time.sleep(0.05)
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT schemaname || '.' || relname, n_live_tup, n_tup_upd + n_tup_del"
        " + analyze_count + autoanalyze_count + vacuum_count + autovacuum_count"
        " FROM pg_stat_user_tables"
    ).fetchall()
    return {
        str(name): int(live)
        for name, live, changed in rows
        if name in expected and int(live) == expected[name] and not changed
    }


def schema_hash(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def jobs() -> int:
    """Parallel pg_restore jobs: half the cores (the server needs the others), 1 to 4.

    ``NSELF_RESTORE_JOBS`` overrides it. On 2 cores parallel restore measured slower than
    one job (the server's backends and pg_restore compete for the same cores).
    """
    forced = os.environ.get("NSELF_RESTORE_JOBS", "").strip()
    if forced.isascii() and forced.isdigit() and int(forced) > 0:
        return int(forced)
    return max(1, min(4, (os.cpu_count() or 1) // 2))


# -- take -------------------------------------------------------------------------------------


def take(
    transport: Transport,
    store: Store,
    label: str | None = None,
    say: Say = lambda _: None,
    now: datetime | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """Dump the database and its roles; returns the manifest.

    The manifest records where the backup comes from (``project``, the cluster's system
    identifier, the database), which ``restore`` checks."""
    from . import journal

    now = now or datetime.now(UTC)
    folder = store.ensure()
    _clean_unfinished(store, say)
    clean_leftovers(folder, say)
    name, pending, held_mark = _reserve(store, label, now)  # held until the manifest
    try:
        started = time.monotonic()
        say(f"backing up {transport.describe()} to {name}")
        with transport.connect() as conn:
            untimed(conn)  # it holds the snapshot, idle in its transaction, while pg_dump runs
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = conn.execute(
                "SELECT pg_export_snapshot(), current_setting('server_version'), current_database()"
            ).fetchone()
            assert row is not None
            snapshot, server_version, database = row
            system_id = cluster_id(conn)
            with (
                _temp_in(folder, name) as (tmp, handle),
                _temp_in(folder, name + ".globals.sql") as (gtmp, ghandle),
            ):
                failure: list[BaseException] = []

                def dump() -> None:
                    try:
                        transport.run_tool(
                            "pg_dump",
                            ["-Fc", f"--snapshot={snapshot}", "--no-password", "-d", database],
                            stdout=handle,
                        )
                    except BaseException as exc:
                        failure.append(exc)

                worker = threading.Thread(target=dump, name="pg_dump")
                worker.start()
                try:
                    counts, schema_lines = snapshot_facts(conn)  # same snapshot, while pg_dump runs
                    _dump_globals(transport, ghandle)  # while pg_dump runs too
                finally:
                    worker.join()
                conn.execute("COMMIT")
                if failure:
                    raise _disk_hint(failure[0], folder)
                _finish(handle)
                _finish(ghandle)
                manifest = {
                    "format": FORMAT,
                    "name": name,
                    "label": label,
                    "created": now.isoformat(),
                    "size": tmp.stat().st_size,
                    "sha256": file_sha256(tmp),
                    "globals_sha256": file_sha256(gtmp),
                    "project": project,
                    "system_identifier": system_id,
                    "database": database,
                    "postgres_version": server_version,
                    "nself_version": nself_version,
                    "tables": counts,
                    "rows": sum(counts.values()),
                    "schema_sha256": schema_hash(schema_lines),
                    "schema": schema_lines,
                    "seconds": round(time.monotonic() - started, 2),
                }
                os.replace(gtmp, store.globals_file(name))
                os.replace(tmp, store.dump(name))
                _fsync_dir(folder)
                journal.checkpoint("backup-renamed")
                _write_json(store.manifest_file(name), manifest)  # last: now the backup exists
    except BaseException:
        if not store.manifest_file(name).exists():  # no backup: its files go too
            store.dump(name).unlink(missing_ok=True)
            store.globals_file(name).unlink(missing_ok=True)
        raise
    finally:
        held_mark.close()
        pending.unlink(missing_ok=True)
    return manifest


PENDING = ".pending"  # a temp file held from a backup's name to its manifest


def _reserve(store: Store, label: str | None, now: datetime) -> tuple[str, Path, Any]:
    """A name no other backup has or is taking (two at once in the same minute): its dump
    is created empty at once (O_EXCL), under a held pending mark that names it, so a run
    killed before its manifest leaves the next one what to remove (``unfinished``)."""
    import fcntl

    from .durable import TEMP_PREFIX

    while True:
        name = store.new_name(label, now)
        fd, mark = tempfile.mkstemp(
            dir=store.root, prefix=f"{TEMP_PREFIX}{name}{PENDING}.", suffix=".part"
        )
        os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.close(os.open(store.dump(name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another run took it between the look and now
            os.close(fd)
            os.unlink(mark)
            continue
        except BaseException:
            os.close(fd)
            os.unlink(mark)
            raise
        return name, Path(mark), os.fdopen(fd, "wb")


def unfinished(store: Store) -> list[Path]:
    """The files of backups whose run was killed between renaming them into place and
    writing the manifest (its pending mark, which nobody holds now, names it), then the
    mark: without a manifest they are no backup, and no list would ever show them."""
    from .durable import LEFTOVER_GRACE, TEMP_PREFIX, held

    now = time.time()
    found: list[Path] = []
    for mark in sorted(store.root.glob(f"{TEMP_PREFIX}*{PENDING}.*.part")):
        if held(mark) or now - mark.stat().st_mtime <= LEFTOVER_GRACE:
            continue
        name = mark.name[len(TEMP_PREFIX) :].rsplit(PENDING + ".", 1)[0]
        if not store.manifest_file(name).exists():
            found += [
                path
                for path in (store.dump(name), store.globals_file(name))
                if path.is_file() and not path.is_symlink()
            ]
        found.append(mark)
    return found


def _clean_unfinished(store: Store, say: Say) -> None:
    for path in unfinished(store):
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        if not path.name.endswith(".part"):
            say(f"removed {path.name} ({size} bytes): a backup killed before its manifest")


def cluster_id(conn: psycopg.Connection[Any]) -> str | None:
    """The cluster's system identifier (None where a managed service hides it)."""
    import psycopg

    try:
        with conn.transaction():  # a savepoint inside the snapshot transaction
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()")
            found = row.fetchone()
    except psycopg.Error:
        return None
    return str(found[0]) if found else None


def _dump_globals(transport: Transport, handle: Any) -> None:
    result = transport.run_tool(
        "pg_dumpall", ["--globals-only", "--no-password"], stdout=handle, check=False
    )
    if result.returncode != 0:  # not a superuser (managed database): no passwords
        handle.seek(0)
        handle.truncate()
        transport.run_tool(
            "pg_dumpall", ["--globals-only", "--no-role-passwords", "--no-password"], stdout=handle
        )


def _disk_hint(exc: BaseException, folder: Path) -> BaseException:
    """A full disk says which folder and how much room is left."""
    text = exc.message if isinstance(exc, NselfError) else str(exc)
    if "No space left" not in text and not (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return exc
    free = shutil.disk_usage(folder).free
    return NselfError(
        f"the disk of {folder} is full ({free // 2**20} MiB free): the backup was not written",
        "make room (`nself db backup prune`, or set BACKUP_DIR to a larger disk); the partial"
        " file was removed",
    )


# -- integrity --------------------------------------------------------------------------------


def _is(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind is dict:
        return isinstance(value, dict) and all(
            isinstance(k, str) and _is(v, int) for k, v in value.items()
        )
    return isinstance(value, kind)


def check_integrity(store: Store, name: str) -> dict[str, Any]:
    """The manifest, after checking every file against it; nothing is touched."""
    hint = "pick another backup (`nself db backup list`); nothing was changed"
    try:
        manifest = json.loads(store.manifest_file(name).read_text())
    except FileNotFoundError:
        raise NselfError(f"backup {name} has no manifest ({name}.json)", hint) from None
    except (OSError, ValueError) as exc:
        raise NselfError(f"the manifest of backup {name} is unreadable: {exc}", hint) from None
    if not isinstance(manifest, dict) or any(k not in manifest for k in REQUIRED):
        raise NselfError(f"the manifest of backup {name} is incomplete", hint)
    wrong = [k for k, kind in MANIFEST_TYPES.items() if not _is(manifest[k], kind)]
    if wrong:
        raise NselfError(f"the manifest of backup {name} is malformed: {', '.join(wrong)}", hint)
    if manifest["format"] != FORMAT or manifest["name"] != name:
        raise NselfError(f"the manifest of backup {name} does not describe this backup", hint)
    dump = store.dump(name)
    if not dump.is_file():
        raise NselfError(f"backup {name}: the dump file is missing", hint)
    size = dump.stat().st_size
    if size != manifest["size"]:
        raise NselfError(
            f"backup {name} is damaged: {size} bytes, the manifest says {manifest['size']}"
            + (" (truncated)" if size < manifest["size"] else ""),
            hint,
        )
    if file_sha256(dump) != manifest["sha256"]:
        raise NselfError(f"backup {name} is damaged: its sha256 does not match the manifest", hint)
    globals_file = store.globals_file(name)
    if not globals_file.is_file() or file_sha256(globals_file) != manifest["globals_sha256"]:
        raise NselfError(f"backup {name}: the roles file is missing or damaged", hint)
    return manifest


def _toc(transport: Transport, staged: str, name: str) -> list[str]:
    result = transport.run_tool("pg_restore", ["--list", staged], check=False)
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise NselfError(
            f"backup {name} is unreadable by pg_restore: {err[-1] if err else 'unknown error'}",
            "pick another backup; nothing was changed",
        )
    return result.stdout.decode("utf-8", "replace").splitlines()


def _split_toc(lines: list[str]) -> tuple[list[str], list[str]]:
    """(entries to restore anywhere, entries bound to their database such as pg_cron's)."""
    main: list[str] = []
    bound: list[str] = []
    for line in lines:
        is_bound = any(
            re.search(rf"\bEXTENSION (- )?{re.escape(ext)}\s*$", line) for ext in DATABASE_BOUND
        ) or re.search(r"\b(TABLE DATA|SEQUENCE SET) cron ", line)
        (bound if is_bound else main).append(line)
    return main, bound


# -- restore into a database ------------------------------------------------------------------


def _create_db(conn: psycopg.Connection[Any], name: str, like: str | None = None) -> None:
    """A new database (never replacing one: an existing name is refused), with the owner,
    encoding, locale and tablespace of ``like`` when it exists (its settings are copied
    once it is filled: ``_copy_settings``)."""
    from psycopg import sql

    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        raise NselfError(
            f"a database named {name} already exists, and nself did not create it in this run",
            "rename or drop it yourself if it is not needed; nothing was changed",
        )
    row = None
    if like is not None:
        row = conn.execute(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype,"
            " (SELECT spcname FROM pg_tablespace WHERE oid = dattablespace)"
            " FROM pg_database WHERE datname = %s",
            (like,),
        ).fetchone()
    if like is None or row is None:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        return
    owner, encoding, collate, ctype, tablespace = row
    # Naming a tablespace needs CREATE on it, even pg_default, which an owner that is not a
    # superuser lacks: the default is left unsaid.
    where: sql.Composable = sql.SQL("")
    if tablespace != "pg_default":
        where = sql.SQL(" TABLESPACE {}").format(sql.Identifier(tablespace))
    conn.execute(
        sql.SQL(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}{}"
        ).format(
            sql.Identifier(name),
            sql.Identifier(owner),
            sql.Literal(encoding),
            sql.Literal(collate),
            sql.Literal(ctype),
            where,
        )
    )


# Settings whose stored value is a list of quoted names (``search_path = app, "$user"``):
# given back as one literal they would become a single name. pg_dump's list
# (``variable_is_guc_list_quote``, src/fe_utils/string_utils.c).
LIST_SETTINGS = frozenset(
    {
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    }
)


def _copy_settings(conn: psycopg.Connection[Any], like: str, name: str) -> list[str]:
    """``ALTER DATABASE like SET ...`` and ``ALTER ROLE r IN DATABASE like SET ...`` again
    for database ``name``; returns those this role may not set (a superuser's setting, an
    owner that is not one), which are left out rather than failing the restore."""
    from psycopg import errors, sql

    refused: list[str] = []

    for role, setting in conn.execute(
        "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END,"
        " unnest(s.setconfig) FROM pg_db_role_setting s JOIN pg_database d"
        " ON d.oid = s.setdatabase WHERE d.datname = %s ORDER BY s.setrole",
        (like,),
    ).fetchall():
        key, _, value = str(setting).partition("=")
        who = (
            sql.SQL("ALTER DATABASE {}").format(sql.Identifier(name))
            if role is None
            else sql.SQL("ALTER ROLE {} IN DATABASE {}").format(
                sql.Identifier(role), sql.Identifier(name)
            )
        )
        try:
            conn.execute(
                sql.SQL("{} SET {} TO {}").format(
                    who,
                    sql.Identifier(key),
                    sql.SQL(", ").join(sql.Literal(v) for v in _setting_values(key, value)),
                )
            )
        except errors.InsufficientPrivilege:
            refused.append(f"{key} = {value}" + (f" (role {role})" if role else ""))
    return refused


def _setting_values(key: str, value: str) -> list[str]:
    """The value of a stored setting as ``SET`` takes it back: one literal, or for a list
    of names each name (read by PostgreSQL's parser, as ``SET`` reads them)."""
    if key.lower() not in LIST_SETTINGS:
        return [value]
    from pglast import parser

    try:
        tree = json.loads(parser.parse_sql_json(f"SET {key} TO {value}"))
        (stmt,) = tree["stmts"]
        args = stmt["stmt"]["VariableSetStmt"]["args"]
        names = [str(a["A_Const"]["sval"]["sval"]) for a in args]
    except (parser.ParseError, KeyError, TypeError, ValueError):
        return [value]
    return names or [value]


def _missing_roles(
    conn: psycopg.Connection[Any], globals_sql: str, name: str, bare: bool = False
) -> tuple[list[str], list[str]]:
    """Statements recreating the roles of the backup that this cluster lacks, and their
    names: each role's CREATE, ALTER and settings, and the memberships that involve one of
    them; ``bare``: only each role, without login or any attribute (what a scratch copy
    needs for its owners and grants). The roles file is read by PostgreSQL's parser (its
    psql meta-commands, ``\\restrict``, aside): any other statement it holds is never run,
    and each one runs on its own."""
    from pglast import parse_sql
    from pglast.stream import RawStream
    from psycopg import sql

    from .migrations.sqltext import statements

    existing = {str(r[0]) for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    text = "\n".join("" if line.startswith("\\") else line for line in globals_sql.splitlines())
    found = statements(text, f"the roles file of backup {name}")

    def role(spec: Any) -> str | None:  # a RoleSpec naming a role (not CURRENT_USER...)
        spec = spec.get("RoleSpec", spec) if isinstance(spec, dict) else {}
        return str(spec["rolename"]) if spec.get("roletype") == "ROLESPEC_CSTRING" else None

    new: set[str] = set()
    out: list[str] = []
    for s in found:
        if s.kind == "CreateRoleStmt" and s.node.get("role") not in existing:
            new.add(str(s.node["role"]))
            bare_role = sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(s.node["role"]))
            out.append(bare_role.as_string(conn) if bare else s.text)
        elif (
            not bare
            and s.kind in ("AlterRoleStmt", "AlterRoleSetStmt")
            and not s.node.get("database")  # a setting of one database: not a role's own
            and role(s.node.get("role")) in new
        ):
            out.append(s.text)
    for s in found:
        if bare or s.kind != "GrantRoleStmt" or not s.node.get("is_grant"):
            continue
        granted = [str(p["AccessPriv"].get("priv_name")) for p in s.node.get("granted_roles", [])]
        grantees = [role(g) for g in s.node.get("grantee_roles", [])]
        involved = {*granted, *(g for g in grantees if g)}
        if involved & new and involved <= existing | new:
            (raw,) = parse_sql(s.text)
            grant: Any = raw.stmt
            grant.grantor = None  # this cluster's grantor: the role restoring
            out.append(RawStream()(grant))
    return out, sorted(new)


def _drop_roles(conn: psycopg.Connection[Any], names: list[str]) -> None:
    """Drop the roles a verify created for its scratch copy (gone with it by now)."""
    import psycopg
    from psycopg import sql

    for role in names:
        with suppress(psycopg.Error):  # another run's objects use it: it stays
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _restore_into(
    transport: Transport, staged: str, toc: list[str], database: str, tmpdir: Path
) -> list[str]:
    """pg_restore in parallel into ``database``; returns the database-bound entries left out."""
    main, bound = _split_toc(toc)
    rest, confined = _confined_data(main)

    def restore(lines: list[str], *extra: str) -> None:
        listing = tmpdir / "toc.list"
        listing.write_text("\n".join(lines) + "\n")
        with transport.stage(listing) as staged_list:
            transport.run_tool(
                "pg_restore",
                [
                    "--exit-on-error",
                    "--no-password",
                    f"--jobs={jobs()}",
                    *extra,
                    "-L",
                    staged_list,
                    "-d",
                    database,
                    staged,
                ],
            )

    if not confined:
        restore(main)
        return bound
    # COPY evaluates a table's CHECK constraints, domain checks and generated columns as
    # the restoring user: a plugin's rows are loaded as its own role (SET ROLE), so a
    # function of its schema never runs with the superuser's rights. Its triggers and
    # indexes come after the data, as in one pass (post-data).
    restore(rest, "--section=pre-data")
    restore(rest, "--section=data")
    for role, lines in sorted(confined.items()):
        restore(lines, "--section=data", f"--role={role}")
    restore(rest, "--section=post-data")
    return bound


# A plugin bundle's database role (database.migrations.confine): its tables' rows are
# restored as that role. The owner is the last field of a line of pg_restore --list.
_CONFINED_OWNER = re.compile(r"^nself_plugin_[a-z0-9_]+$")


def _confined_data(lines: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(the other entries, the TABLE DATA entries of each plugin role)."""
    rest: list[str] = []
    confined: dict[str, list[str]] = {}
    for line in lines:
        owner = line.rsplit(" ", 1)[-1]
        if " TABLE DATA " in line and _CONFINED_OWNER.match(owner):
            confined.setdefault(owner, []).append(line)
        else:
            rest.append(line)
    return rest, confined


def _compare(conn: psycopg.Connection[Any], manifest: dict[str, Any], name: str) -> tuple[int, int]:
    untimed(conn)
    expected: dict[str, int] = manifest["tables"]
    counts, schema_lines = snapshot_facts(conn, restored_counts(conn, expected))
    if counts != expected:
        diffs = [
            f"{t}: {expected.get(t, 'absent')} -> {counts.get(t, 'absent')}"
            for t in sorted(set(counts) | set(expected))
            if counts.get(t) != expected.get(t)
        ]
        raise NselfError(
            f"backup {name}: restored row counts differ from the source: " + "; ".join(diffs[:5])
        )
    if (
        manifest.get("schema_sha256")
        and schema_hash(schema_lines) != manifest["schema_sha256"]
        and schema_hash(schema_of(conn, own_path=True)) != manifest["schema_sha256"]
    ):
        before = set(manifest.get("schema") or [])
        after = set(schema_lines)
        changes = [f"-{x}" for x in sorted(before - after)] + [
            f"+{x}" for x in sorted(after - before)
        ]
        raise NselfError(
            f"backup {name}: the restored schema differs from the source: " + "; ".join(changes[:5])
        )
    return len(counts), sum(counts.values())


def verify(
    transport: Transport, store: Store, name: str, say: Say = lambda _: None
) -> dict[str, Any]:
    """Hash check, then a real restore into a scratch database compared with the source."""
    from . import journal

    started = time.monotonic()
    record: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "ok": False}
    try:
        manifest = check_integrity(store, name)
        record["sha256"] = manifest["sha256"]
        with (
            journal.Run(transport) as run,
            tempfile.TemporaryDirectory(prefix="nself-verify-") as tmp,
        ):
            admin = run.admin
            finish = bound_finisher(transport, store, run.key)
            journal.settle(run, transport.dbname, say, finish, staged=True)
            scratch = journal.scratch_name(run.key)
            say(f"verifying {name}: restoring into scratch database {scratch}")
            with transport.stage(store.dump(name), run.key) as staged:
                toc = _toc(transport, staged, name)
                with run.roles(say):  # no restore looks for its roles while these exist
                    roles, created = _missing_roles(
                        admin, store.globals_file(name).read_text(), name, bare=True
                    )
                    try:
                        with admin.transaction():  # each role is marked as this run's: a
                            for statement in roles:  # killed verify's go at the next settle
                                admin.execute(statement.encode())
                            for role in created:
                                journal.set_role_mark(admin, role, run.mark("role", backup=name))
                        journal.checkpoint("verify-roles")
                        _create_db(admin, scratch)
                        try:
                            journal.set_mark(admin, scratch, run.mark("scratch", backup=name))
                            _restore_into(transport, staged, toc, scratch, Path(tmp))
                            with transport.connect(dbname=scratch) as conn:
                                tables, rows = _compare(conn, manifest, name)
                        finally:
                            journal.drop(admin, scratch)
                    finally:
                        _drop_roles(admin, created)
        record.update(
            ok=True, tables=tables, rows=rows, seconds=round(time.monotonic() - started, 2)
        )
        return record
    except NselfError as exc:
        record["error"] = exc.message
        raise
    finally:
        if store.manifest_file(name).exists():
            _write_json(store.verified_file(name), record)


def provenance_problem(
    manifest: dict[str, Any], project: str | None, system_id: str | None, database: str
) -> str | None:
    """Why the backup is not this project's own database on this cluster, or None."""
    origin = [
        ("project", manifest.get("project"), project),
        ("cluster", manifest.get("system_identifier"), system_id),
        ("database", manifest.get("database"), database),
    ]
    differs = [
        f"{what} {there or 'unknown'} (here: {here})"
        for what, there, here in origin
        if here is not None and there != here
    ]
    return ", ".join(differs) if differs else None


def origin(
    conn: psycopg.Connection[Any],
    manifest: dict[str, Any],
    name: str,
    project: str | None,
    target: str,
    other_project: bool,
) -> str | None:
    """Where backup ``name`` comes from when that is not this project's database (None when
    it is); refused unless ``other_project``."""
    # a cluster that hides its identifier (a managed service) cannot be compared
    problem = provenance_problem(manifest, project, cluster_id(conn), target)
    if problem and not other_project:
        raise NselfError(
            f"backup {name} is not from this project's database: {problem}; restoring it"
            f" would replace database {target}"
            + (f" of project {project}" if project else "")
            + " with another one's data",
            "if that is what you want (a rebuilt server, a copy of another project), add"
            " --from-other-project; nothing was changed",
        )
    return problem


def restore(
    transport: Transport,
    store: Store,
    name: str,
    safety_backup: bool = True,
    say: Say = lambda _: None,
    project: str | None = None,
    other_project: bool = False,
) -> dict[str, Any]:
    """Replace the project's database with backup ``name``.

    Checked first (manifest, size, sha256, where it comes from, pg_restore's table of
    contents). Restored into a new database and compared with the manifest; only then the
    swap, one transaction: the current database is renamed to ``<db>__pre_restore_<time>``
    and kept (with every write it received until the swap), the new one takes its name.
    That kept database is the safety copy: nearly free, and complete. With
    ``safety_backup=False`` the current database refuses connections from the start
    (so no write is acknowledged and then lost) and is dropped after the swap. A failure
    before the swap leaves the current database as it was; an interruption is finished or
    undone by the next nself (``journal.settle``).
    """
    from . import journal

    manifest = check_integrity(store, name)
    target = transport.dbname
    result: dict[str, Any] = {
        "database": target,
        "backup": name,
        "previous": None,
        "previous_dropped": False,
        "settled": [],
        "origin": None,
    }
    with (
        journal.Run(transport) as run,
        tempfile.TemporaryDirectory(prefix="nself-restore-") as tmp,
    ):
        admin = run.admin

        def finish_bound(mark: journal.Mark) -> None:
            _finish_bound(transport, store, mark, Path(tmp), run.key)

        result["settled"] = journal.settle(run, target, say, finish_bound, staged=True)
        problem = origin(admin, manifest, name, project, target, other_project)
        if problem:
            result["origin"] = problem
            say(f"restoring a backup from elsewhere ({problem}) over {target}")
        if not run.lock_target(target):
            raise NselfError(
                f"another nself is restoring {target} right now", "wait for it to finish"
            )
        try:
            with transport.stage(store.dump(name), run.key) as staged:
                toc = _toc(transport, staged, name)
                with run.roles(say):  # a verify's bare roles are not the backup's
                    roles, created = _missing_roles(
                        admin, store.globals_file(name).read_text(), name
                    )
                    with admin.transaction():  # a role is made whole or not at all: killed
                        for statement in roles:  # between its CREATE and its ALTER ... LOGIN,
                            admin.execute(statement.encode())  # the next restore makes it
                            journal.checkpoint("restore-roles")  # again
                if created:
                    say("created the roles this cluster lacked: " + ", ".join(created))
                result.update(
                    _restore_and_swap(
                        transport, run, manifest, name, staged, toc, Path(tmp), safety_backup, say
                    )
                )
        finally:
            run.unlock_target(target)
    return result


def _restore_and_swap(
    transport: Transport,
    run: Any,
    manifest: dict[str, Any],
    name: str,
    staged: str,
    toc: list[str],
    tmpdir: Path,
    keep_previous: bool,
    say: Say,
) -> dict[str, Any]:
    from . import journal

    admin = run.admin
    target = transport.dbname
    incoming = journal.incoming_name(target, run.key)
    found = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone()
    exists = found is not None
    _create_db(admin, incoming, like=target)
    journal.checkpoint("created")
    mark = run.mark("incoming", target=target, backup=name, phase="restoring")
    swapped = False
    try:
        journal.set_mark(admin, incoming, mark)
        if not keep_previous and exists:
            mark.closed = True
            with admin.transaction():
                journal.set_mark(admin, incoming, mark)
                journal.allow_connections(admin, target, False)
            _close_sessions(admin, target)
            say(
                f"{target} refuses connections from now until the restore ends (its data is"
                " replaced without a copy, so no write may be accepted and then lost)"
            )
        say(f"restoring {name} ({jobs()} parallel job{'s' if jobs() > 1 else ''})")
        bound = _restore_into(transport, staged, toc, incoming, tmpdir)
        # the database's settings only now: pg_restore must not run under them (a
        # default_transaction_read_only, a short statement_timeout)
        refused = _copy_settings(admin, target, incoming) if exists else []
        journal.checkpoint("restored")
        with transport.connect(dbname=incoming) as conn:
            _compare(conn, manifest, name)
        mark.phase = "verified"
        journal.set_mark(admin, incoming, mark)
        say(f"switching {target} to the restored data")
        previous = _swap(admin, run, target, incoming, mark, bool(bound), exists)
        swapped = True
    except BaseException:
        if not swapped:
            _undo(admin, target, incoming, mark)
        raise
    out: dict[str, Any] = {"previous": previous, "settings_left_out": refused}
    journal.checkpoint("swapped")
    if bound:
        _restore_bound(transport, staged, bound, target, tmpdir)
        if previous:
            done = run.mark("previous", target=target, backup=name, phase="kept")
            journal.set_mark(admin, previous, done)
    if previous and not keep_previous:
        journal.drop(admin, previous)  # the user said so (--no-safety-backup)
        out.update(previous=None, previous_dropped=True)
    return out


def _undo(conn: psycopg.Connection[Any], target: str, incoming: str, mark: Any) -> None:
    """Before the swap committed: the current database as it was, the copy gone."""
    from . import journal

    try:
        if mark.closed:
            journal.allow_connections(conn, target, True)
        journal.drop(conn, incoming)
    except Exception:  # the connection is gone: the next nself settles it (journal)
        pass


def _close_sessions(conn: psycopg.Connection[Any], name: str, seconds: float = 10.0) -> None:
    """Terminate every session of ``name`` and wait until they are gone."""
    from . import journal

    deadline = time.monotonic() + seconds
    while True:
        journal.terminate(conn, name)
        if journal.sessions(conn, name) == 0 or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _swap(
    conn: psycopg.Connection[Any],
    run: Any,
    target: str,
    incoming: str,
    mark: Any,
    bound: bool,
    exists: bool,
) -> str | None:
    """The restored database takes ``target``'s name in one transaction; returns the name
    the previous database is kept under (None when there was none)."""
    from psycopg import errors

    from . import journal

    if not exists:
        with conn.transaction():
            journal.rename(conn, incoming, target)
            journal.set_mark(conn, target, None)
        return None
    found = journal.databases(conn)
    own = found[target].comment
    mark.comment = own if journal.Mark.parse(own) is None else None
    mark.phase = "closing"
    was_closed, mark.closed = mark.closed, True
    with conn.transaction():  # journal first: whoever finds the database closed knows why
        journal.set_mark(conn, incoming, mark)
        if not was_closed:
            journal.allow_connections(conn, target, False)
    journal.checkpoint("closed")
    when = datetime.now(UTC)
    kept = journal.kept_name(target, when)
    while kept in found:
        when += timedelta(seconds=1)
        kept = journal.kept_name(target, when)
    previous = run.mark("previous", target=target, backup=mark.backup, phase="kept", bound=bound)
    for attempt in range(10):  # the rename waits up to 5 s for sessions to end, each time
        _close_sessions(conn, target, seconds=1.0)
        try:
            with conn.transaction():
                journal.rename(conn, target, kept)
                journal.checkpoint("renamed")
                journal.rename(conn, incoming, target)
                journal.allow_connections(conn, kept, True)
                journal.set_mark(conn, kept, previous)
                journal.set_mark(conn, target, mark.comment)
            return kept
        except errors.ObjectInUse:  # a session slipped in before the rename: again
            if attempt == 9:
                left = journal.holders(conn, target)
                raise NselfError(
                    f"sessions of {target} could not be closed"
                    + (f" ({left})" if left else " (they kept coming back)")
                    + "; the restore was undone",
                    "stop the services using the database (`nself stop`), or close those"
                    " sessions, and try again",
                ) from None
            time.sleep(0.1)
    raise AssertionError("unreachable")


def bound_finisher(transport: Transport, store: Store, run: int) -> Callable[[Any], None]:
    """``journal.settle``'s ``finish_bound`` for any command that knows the backup folder."""

    def finish(mark: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="nself-settle-") as tmp:
            _finish_bound(transport, store, mark, Path(tmp), run)

    return finish


def _finish_bound(transport: Transport, store: Store, mark: Any, tmpdir: Path, run: int) -> None:
    """Redo the last step of an interrupted restore: pg_cron's entries into the target."""
    name = str(mark.backup)
    if not store.manifest_file(name).exists():
        raise NselfError(
            f"an interrupted restore of {name} still has to restore pg_cron's jobs, but the"
            " backup is not in this project's backup folder",
            f"restore {name} again",
        )
    with transport.stage(store.dump(name), run) as staged:
        toc = _toc(transport, staged, name)
        _main, bound = _split_toc(toc)
        _restore_bound(transport, staged, bound, str(mark.target), tmpdir)


def _restore_bound(
    transport: Transport, staged: str, bound: list[str], database: str, tmpdir: Path
) -> None:
    """pg_cron and friends can only live in their own database: restore them there last."""
    listing = tmpdir / "bound.list"
    listing.write_text("\n".join(bound) + "\n")
    with transport.stage(listing) as staged_list:
        transport.run_tool(
            "pg_restore",
            ["--exit-on-error", "--no-password", "-L", staged_list, "-d", database, staged],
        )


# -- retention --------------------------------------------------------------------------------


def prune(
    store: Store, days: int, apply: bool, now: datetime | None = None
) -> tuple[list[str], dict[str, str]]:
    """Backups older than ``days``; never the newest verified one, nor the newest one."""
    if days < 1:
        raise UsageError("retention must be at least 1 day")
    now = now or datetime.now(UTC)
    names = store.names()  # newest first
    keep: dict[str, str] = {}
    if names:
        keep[names[0]] = "newest backup"
    for row in store.listing():
        if row["verified"]:
            keep.setdefault(row["name"], "newest verified backup")
            break
    cutoff = now - timedelta(days=days)
    doomed = []
    for name in names:
        created = store._created(name)
        try:
            when = datetime.fromisoformat(created)
        except ValueError:
            continue
        if when < cutoff and name not in keep:
            doomed.append(name)
    if apply:
        from . import journal

        for name in doomed:
            # held while deleting: killed after the manifest, the rest is the next backup's
            with _temp_in(store.root, name + PENDING) as (pending, handle):
                for path in (
                    store.manifest_file(name),  # first: without it the rest is not a backup
                    store.dump(name),
                    store.globals_file(name),
                    store.verified_file(name),
                ):
                    path.unlink(missing_ok=True)
                    journal.checkpoint("prune-manifest")
                handle.close()
                pending.unlink()
        if doomed:
            _fsync_dir(store.root)
    kept = {n: why for n, why in keep.items() if n in names}
    return doomed, kept


# -- databases restores kept --------------------------------------------------------------------


def kept_databases(target: Target) -> list[Any]:
    """The previous databases restores of the target kept (``journal.Database``), oldest
    first; none when the server cannot be reached."""
    import psycopg

    from . import journal

    try:
        transport = target.transport()
        with transport.connect(dbname="postgres", autocommit=True) as conn:
            return journal.kept(conn, transport.dbname)
    except (NselfError, psycopg.Error):
        return []


def drop_kept(target: Target, names: list[str]) -> None:
    """Drop kept previous databases (the user said --yes); only names ``kept`` lists."""
    from . import journal

    transport = target.transport()
    with transport.connect(dbname="postgres", autocommit=True) as conn:
        allowed = {db.name for db in journal.kept(conn, transport.dbname)}
        for name in names:
            if name not in allowed:
                raise NselfError(f"{name} is not a database a restore kept; nothing dropped")
        for name in names:
            journal.drop(conn, name)


def staged_leftovers(target: Target, apply: bool) -> list[str]:
    """Dumps killed runs left staged inside the postgres service (removed with ``apply``)."""
    import psycopg

    from . import journal
    from .transport import clean_staged

    try:
        with journal.Run(target.transport()) as run:
            return clean_staged(run.transport, journal.live_runs(run.admin), apply=apply)
    except (NselfError, psycopg.Error):
        return []
