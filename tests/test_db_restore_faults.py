"""Restores and backups under real faults, on a real PostgreSQL 15 cluster.

A writer commits every few milliseconds while a restore runs; nself is killed with SIGKILL
at each step of the swap (``NSELF_TEST_KILL_AT``: the process kills itself right there);
backups are killed mid-dump and run out of disk space on a size-limited tmpfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pg_cluster
from pg_cluster import Cluster

pytestmark = pytest.mark.postgres
pg, db = pg_cluster.pg, pg_cluster.db
NSELF = str(Path(sys.executable).parent / "nself")

DATA = """
CREATE TABLE ticks (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE bulk (id int PRIMARY KEY, pad text);
INSERT INTO bulk SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 150000) g;
INSERT INTO ticks (id) SELECT g FROM generate_series(1, 100) g;
"""


def family(pg: Cluster, db: str) -> list[str]:
    return sorted(n for (n,) in pg.sql("SELECT datname FROM pg_database") if n.startswith(db[:30]))


@pytest.fixture
def target(project: Path, pg: Cluster, db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(pg.bindir))
    pg.sql(DATA, db)
    yield project
    with pg.connect() as conn:
        for name in family(pg, db):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')


def cli(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NSELF, *args],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def started(project: Path, *args: str) -> subprocess.Popen[str]:
    """nself running in the background, its output captured."""
    return subprocess.Popen(
        [NSELF, *args], cwd=project, env=dict(os.environ), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def take_backup(project: Path) -> str:
    r = cli(project, "db", "backup", "--json")
    assert r.returncode == 0, r.stderr
    return str(json.loads(r.stdout[r.stdout.index("{") :])["name"])


class Writer:
    """Commits one row every few milliseconds; remembers what the server acknowledged."""

    def __init__(self, url: str, first: int = 1000) -> None:
        self.url = url
        self.next = first
        self.acked: list[tuple[float, int]] = []
        self.refused: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        import psycopg

        conn: Any = None
        while not self.stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
                conn.execute("INSERT INTO ticks (id) VALUES (%s)", (self.next,))
                self.acked.append((time.monotonic(), self.next))  # the commit returned
            except Exception:
                self.refused.append(time.monotonic())
                if conn is not None:
                    conn.close()
                conn = None
            self.next += 1
            time.sleep(0.003)
        if conn is not None:
            conn.close()

    def __enter__(self) -> Writer:
        self.thread.start()
        while len(self.acked) < 20:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)  # writes after the restore go to the restored database
        self.stop.set()
        self.thread.join(timeout=10)


def ids(pg: Cluster, database: str) -> set[int]:
    return {r[0] for r in pg.sql("SELECT id FROM ticks", database)}


@contextlib.contextmanager
def role_only_in_a_backup(target: Path, pg: Cluster, db: str, role: str, how: str) -> Iterator[str]:
    """A backup whose roles file holds ``role`` (``CREATE ROLE role how``, granted SELECT
    on ticks), the role dropped from the server since: yields the backup's name. Afterwards
    the databases restores kept, what the role owns and the role itself are gone."""
    pg.sql(f"CREATE ROLE {role} {how}")
    pg.sql(f"GRANT SELECT ON ticks TO {role}", db)
    try:
        name = take_backup(target)
        pg.sql(f"REVOKE ALL ON ticks FROM {role}", db)
        pg.sql(f"DROP ROLE {role}")
        yield name
    finally:
        with pg.connect() as conn:
            for kept in family(pg, db):
                if kept != db:
                    conn.execute(f'DROP DATABASE IF EXISTS "{kept}" WITH (FORCE)')
        if role_names(pg, role):
            pg.sql(f"DROP OWNED BY {role}", db)
            pg.sql(f"DROP ROLE {role}")


def role_names(pg: Cluster, *roles: str) -> list[str]:
    """Which of ``roles`` the server has."""
    with pg.connect() as conn:
        found = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1", (list(roles),)
        )
        return [row[0] for row in found]


def test_every_write_acknowledged_during_a_restore_is_kept(
    target: Path, pg: Cluster, db: str
) -> None:
    name = take_backup(target)
    with Writer(pg.url(db)) as writer:
        started = time.monotonic()
        r = cli(target, "db", "restore", name)
        ended = time.monotonic()
    assert r.returncode == 0, r.stderr
    kept = [n for n in family(pg, db) if "__pre_restore_" in n]
    assert len(kept) == 1 and kept[0] in r.stdout  # named in the output
    during = [i for t, i in writer.acked if started <= t <= ended]
    assert len(during) > 20, "the writer must really have written during the restore"
    everything = ids(pg, db) | ids(pg, kept[0])
    lost = [i for _t, i in writer.acked if i not in everything]
    assert lost == []
    assert set(during) <= ids(pg, kept[0]) | ids(pg, db)
    assert not [n for n in family(pg, db) if "__restoring_" in n]


def test_without_a_safety_copy_writes_are_refused_from_the_start(
    target: Path, pg: Cluster, db: str
) -> None:
    name = take_backup(target)
    with Writer(pg.url(db)) as writer:
        r = cli(target, "db", "restore", name, "--no-safety-backup")
        ended = time.monotonic()
    assert r.returncode == 0, r.stderr
    assert "refuses connections" in r.stdout
    assert family(pg, db) == [db]  # the previous database is gone, as asked
    assert writer.refused, "the writer must have been refused"
    first_refusal = writer.refused[0]
    assert ended - first_refusal > 0.3  # refused while the data was restored, not at the swap
    restored = ids(pg, db)
    after = [i for t, i in writer.acked if t > first_refusal]
    assert [i for i in after if i not in restored] == []  # nothing acknowledged was lost


STEPS = ["created", "restored", "closed", "renamed", "swapped"]
NEXT = {
    "created": ("db", "backup", "list"),
    "restored": ("db", "migrate", "status"),
    "closed": ("doctor", "--check", "interrupted"),
    "renamed": ("health",),
    "swapped": ("db", "backup", "list"),
}


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_step_of_the_swap(step: str, target: Path, pg: Cluster, db: str) -> None:
    name = take_backup(target)
    assert cli(target, "build").returncode == 0  # `nself health` reads the built stack
    pg.sql("INSERT INTO ticks (id) VALUES (-1)", db)  # only in the current data
    r = cli(target, "db", "restore", name, NSELF_TEST_KILL_AT=step)
    assert r.returncode == -signal.SIGKILL, r.stderr
    # the next nself command finds the interrupted swap, says so, and finishes or undoes it:
    # any `nself db` command, `nself doctor` or `nself health`
    command = NEXT[step]
    r = cli(target, *command)
    assert "Traceback" not in r.stderr
    if command[0] != "health":  # health also reports the stack (not started here)
        assert r.returncode == 0, r.stdout + r.stderr
    if step != "swapped":
        assert "was undone" in r.stdout + r.stderr, r.stdout + r.stderr
    with pg.connect(db) as conn:  # reachable under its name
        has_marker = conn.execute("SELECT count(*) FROM ticks WHERE id = -1").fetchone()[0]
    names = family(pg, db)
    assert not [n for n in names if "__restoring_" in n]
    if step == "swapped":  # the swap had committed: finished, the previous data kept
        assert has_marker == 0
        (kept,) = [n for n in names if "__pre_restore_" in n]
        assert pg.sql("SELECT count(*) FROM ticks WHERE id = -1", kept) == [(1,)]
    else:  # undone: the database is exactly as before
        assert has_marker == 1 and names == [db]
    assert pg.sql(f"SELECT datallowconn FROM pg_database WHERE datname = '{db}'") == [(True,)]
    # and a restore now works
    r = cli(target, "db", "restore", name)
    assert r.returncode == 0, r.stderr


def test_a_restore_killed_while_pg_restore_runs_leaves_nothing_after_the_next_command(
    target: Path, pg: Cluster, db: str
) -> None:
    """The orphaned pg_restore goes on by itself; the next command drops its database (which
    ends it) and the database is as before."""
    name = take_backup(target)
    pg.sql("INSERT INTO ticks (id) VALUES (-1)", db)
    proc = subprocess.Popen(
        [NSELF, "db", "restore", name], cwd=target, env=dict(os.environ), stdout=subprocess.DEVNULL
    )
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_restore'"
        f" AND datname LIKE '{db[:30]}%\\_\\_restoring\\_%'"
    )
    deadline = time.monotonic() + 60
    while pg.sql(query) == [(0,)] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pg.sql(query) != [(0,)], "pg_restore never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = cli(target, "db", "backup", "list")
    assert r.returncode == 0 and "was undone" in r.stderr + r.stdout, r.stderr
    deadline = time.monotonic() + 10
    while pg.sql(query) != [(0,)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pg.sql(query) == [(0,)]  # the orphaned pg_restore lost its database and ended
    assert family(pg, db) == [db]
    assert pg.sql("SELECT count(*) FROM ticks WHERE id = -1", db) == [(1,)]


def test_a_user_database_with_nselfs_name_is_never_dropped(
    target: Path, pg: Cluster, db: str
) -> None:
    """A database nself did not create (no mark, no live run) is left alone."""
    from nself_builtins.database.journal import incoming_name

    name = take_backup(target)
    mine = incoming_name(db, 0xABCD)  # exactly the name a restore's copy would have
    pg.sql(f'CREATE DATABASE "{mine}"')
    pg.sql("CREATE TABLE precious (x int); INSERT INTO precious VALUES (7)", mine)
    pg.sql(f"COMMENT ON DATABASE \"{mine}\" IS 'mine'")
    r = cli(target, "db", "restore", name)
    assert r.returncode == 0, r.stderr
    assert "has the name of nself's databases but no mark: left alone" in r.stderr
    assert pg.sql("SELECT x FROM precious", mine) == [(7,)]


def test_a_killed_backup_leaves_nothing_after_the_next_run(target: Path, pg: Cluster) -> None:
    folder = target / "backups"
    proc = subprocess.Popen([NSELF, "db", "backup"], cwd=target, env=dict(os.environ))
    deadline = time.monotonic() + 30
    while not list(folder.glob(".nself-*.part")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(folder.glob(".nself-*.part")), "the backup never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2.5)  # the orphaned pg_dump finishes; its temp file is nobody's now
    for _ in range(100):
        if not subprocess.run(["pgrep", "-f", "pg_dump -Fc"], capture_output=True).stdout:
            break
        time.sleep(0.1)
    assert list(folder.glob(".nself-*.part"))
    take_backup(target)
    assert not list(folder.glob(".nself-*"))
    assert len(list(folder.glob("*.dump.json"))) == 1


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A size-limited tmpfs: a full disk for real (in a folder the server's user can reach)."""
    root = Path(tempfile.mkdtemp(prefix="nself-small-"))
    os.chmod(root, 0o755)
    folder = root / "disk"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)]
    )
    if done.returncode != 0:
        pytest.fail("cannot mount a tmpfs (the suite runs as root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)])
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def small_disk() -> Iterator[Path]:
    with tmpfs("2m") as folder:
        yield folder


def test_a_full_disk_during_a_backup_leaves_nothing(
    target: Path, small_disk: Path, pg: Cluster
) -> None:
    (target / ".env.local").write_text(f"BACKUP_DIR={small_disk / 'backups'}\n")
    r = cli(target, "db", "backup")
    assert r.returncode == 1
    assert "is full" in r.stderr and "Traceback" not in r.stderr
    assert [p.name for p in (small_disk / "backups").iterdir()] == [".gitignore"]


def test_a_full_disk_during_a_restore_leaves_nothing(target: Path, pg: Cluster, db: str) -> None:
    """The database lives in a tablespace on a 20 MiB disk; the backup (with 150000 more
    rows) does not fit beside it, so pg_restore runs out of space halfway."""
    name = take_backup(target)
    pg.sql("TRUNCATE bulk", db)
    with tmpfs("20m") as disk:
        subprocess.run(["chown", "postgres:postgres", str(disk)], check=True)
        pg.sql(f"CREATE TABLESPACE small LOCATION '{disk}'")
        try:
            pg.sql(f'ALTER DATABASE "{db}" SET TABLESPACE small')
            r = cli(target, "db", "restore", name)
            assert r.returncode == 1
            assert "No space left" in r.stderr or "could not extend" in r.stderr, r.stderr
            assert "Traceback" not in r.stderr
            assert family(pg, db) == [db]  # the unfinished copy is gone
            assert pg.sql("SELECT count(*) FROM ticks", db) == [(100,)]  # untouched
            allowed = f"SELECT datallowconn FROM pg_database WHERE datname = '{db}'"
            assert pg.sql(allowed) == [(True,)]
        finally:
            with pg.connect() as conn:
                conn.execute(f'ALTER DATABASE "{db}" SET TABLESPACE pg_default')
                conn.execute("DROP TABLESPACE small")


def test_a_restore_whose_last_step_cannot_be_redone_never_blocks_the_next(
    target: Path, pg: Cluster, db: str
) -> None:
    """A restore killed after its swap, before pg_cron's jobs, is finished by the next
    restore; when its backup was pruned since (or the step fails), that is said once and
    the next restore goes on, instead of failing every restore from then on."""
    from nself_builtins.database.journal import Mark

    name = take_backup(target)
    r = cli(target, "db", "restore", name)
    assert r.returncode == 0, r.stderr
    (kept,) = [n for n in family(pg, db) if "__pre_restore_" in n]
    (comment,) = pg.sql(
        f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{kept}'"
    )[0]
    mark = Mark.parse(comment)
    assert mark is not None and mark.kind == "previous"
    mark.bound, mark.backup = True, "backup-2020-01-01-00-00.dump"  # since pruned
    pg.sql(f"COMMENT ON DATABASE \"{kept}\" IS '{mark.text()}'")
    r = cli(target, "db", "backup", "list")
    assert r.returncode == 0, r.stderr
    assert "could not restore pg_cron's jobs" in r.stderr, r.stderr
    r = cli(target, "db", "restore", name)
    assert r.returncode == 0 and "pg_cron" not in r.stderr, r.stderr  # said once


def test_pg_crons_step_of_a_restore_killed_after_its_swap_is_done_by_any_next_command(
    target: Path, pg: Cluster, db: str
) -> None:
    """pg_cron's rows (schema cron) can only go into the database under its name, so they
    are restored after the swap; a kill right after it leaves them to the next command,
    whichever it is (here `nself db migrate status`)."""
    pg.sql("CREATE SCHEMA cron; CREATE TABLE cron.job (jobid int PRIMARY KEY, command text)", db)
    pg.sql("INSERT INTO cron.job VALUES (1, 'VACUUM'), (2, 'ANALYZE')", db)
    name = take_backup(target)
    r = cli(target, "db", "restore", name, NSELF_TEST_KILL_AT="swapped")
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert pg.sql("SELECT count(*) FROM cron.job", db) == [(0,)]  # not there yet
    r = cli(target, "db", "migrate", "status")
    assert r.returncode == 0, r.stderr
    assert "finished an interrupted restore" in r.stderr, r.stderr
    assert pg.sql("SELECT jobid FROM cron.job ORDER BY 1", db) == [(1,), (2,)]
    r = cli(target, "db", "migrate", "status")
    assert "interrupted" not in r.stderr, r.stderr  # done once


def test_a_killed_verify_leaves_no_role_behind(target: Path, pg: Cluster, db: str) -> None:
    """A verify creates the roles its scratch copy needs; killed before it could drop them,
    the next nself command drops them (and only them: a role of the same shape that no
    verify marked stays)."""
    pg.sql("CREATE ROLE users_own NOLOGIN")
    try:
        with role_only_in_a_backup(target, pg, db, "verify_needs", "NOLOGIN") as name:
            r = cli(target, "db", "backup", "verify", name, NSELF_TEST_KILL_AT="verify-roles")
            assert r.returncode == -signal.SIGKILL, r.stderr
            assert role_names(pg, "verify_needs") == ["verify_needs"]
            r = cli(target, "db", "backup", "list")
            assert r.returncode == 0, r.stderr
            assert "verify_needs" in r.stdout + r.stderr  # it says what it dropped
            assert role_names(pg, "verify_needs", "users_own") == ["users_own"]
            r = cli(target, "db", "backup", "verify", name)  # and a verify now works
            assert r.returncode == 0, r.stdout + r.stderr
    finally:
        pg.sql("DROP ROLE IF EXISTS users_own")


def test_a_restore_killed_in_its_roles_step_leaves_no_half_made_role(
    target: Path, pg: Cluster, db: str
) -> None:
    """The roles a restore recreates (CREATE ROLE, then its ALTER ROLE ... LOGIN PASSWORD,
    then its memberships) are made in one transaction: killed between two of them, the
    next restore finds the role missing and makes it whole, instead of taking the
    attribute-less role the kill left for the backup's own."""
    how = "LOGIN PASSWORD 'Half-made-9f2c'"
    with role_only_in_a_backup(target, pg, db, "half_made", how) as name:
        r = cli(target, "db", "restore", name, NSELF_TEST_KILL_AT="restore-roles")
        assert r.returncode == -signal.SIGKILL, r.stderr
        assert role_names(pg, "half_made") == []
        r = cli(target, "db", "restore", name)
        assert r.returncode == 0, r.stderr
        assert "half_made" in r.stdout + r.stderr  # said: created the roles it lacked
        made = "SELECT rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s"
        with pg.connect() as conn:
            assert conn.execute(made, ("half_made",)).fetchall() == [(True, True)]


def test_a_restore_beside_a_verify_gets_the_backups_own_roles(
    target: Path, pg: Cluster, db: str
) -> None:
    """Two nself commands at once: a verify has made the bare role (NOLOGIN) its scratch
    copy needs when a restore of a backup holding that role starts. The restore waits for
    the verify to drop it, then makes the role whole (login, password); it never takes the
    verify's bare role for the backup's own, nor loses it when the verify drops it."""
    how = "LOGIN PASSWORD 'Both-need-9f2c'"
    with role_only_in_a_backup(target, pg, db, "both_need", how) as name:
        verify = started(target, "db", "backup", "verify", name)
        deadline = time.monotonic() + 60
        while not role_names(pg, "both_need"):
            assert time.monotonic() < deadline and verify.poll() is None, "no verify role"
            time.sleep(0.005)
        verify.send_signal(signal.SIGSTOP)  # the verify, paused while its role exists
        restore = started(target, "db", "restore", name)
        time.sleep(3)
        verify.send_signal(signal.SIGCONT)
        v_out, v_err = verify.communicate(timeout=120)
        r_out, r_err = restore.communicate(timeout=120)
        assert verify.returncode == 0, v_out + v_err
        assert restore.returncode == 0, r_out + r_err
        made = (
            "SELECT rolcanlogin, rolpassword IS NOT NULL, shobj_description(oid, 'pg_authid')"
            " FROM pg_authid WHERE rolname = %s"
        )
        with pg.connect() as conn:
            assert conn.execute(made, ("both_need",)).fetchall() == [(True, True, None)]
        assert "waiting for another nself's verify" in r_out + r_err


def test_a_backup_killed_between_its_files_and_its_manifest_leaves_nothing(
    target: Path, pg: Cluster
) -> None:
    """Killed after the dump and the roles file took their names, before the manifest:
    no backup (no manifest), so no list or prune would show them; the next backup removes
    them (its pending mark says nself made them), and `prune` shows them before that."""
    folder = target / "backups"
    r = cli(target, "db", "backup", NSELF_TEST_KILL_AT="backup-renamed")
    assert r.returncode == -signal.SIGKILL, r.stderr
    (dump,) = folder.glob("backup-*.dump")
    assert not list(folder.glob("*.json"))
    time.sleep(2.5)  # past the grace of a temp file just made
    r = cli(target, "db", "backup", "prune")
    assert r.returncode == 0, r.stderr
    assert f"would delete {dump.name} " in r.stdout, r.stdout
    user_file = folder / "backup-2020-01-01-00-00.dump"  # not nself's: no pending mark
    user_file.write_bytes(b"a user's file")
    name = take_backup(target)
    assert not list(folder.glob(".nself-*"))
    assert sorted(p.name for p in folder.glob("backup-*.dump")) == sorted([name, user_file.name])
    assert [p.name for p in folder.glob("*.dump.json")] == [name + ".json"]
    assert user_file.read_bytes() == b"a user's file"


def test_a_forged_mark_on_the_live_database_never_gets_it_dropped(
    target: Path, pg: Cluster, db: str
) -> None:
    """Marks are comments: whoever owns a database may write one. A mark of an unfinished
    restore forged on the live database itself (its owner may comment on it) makes settling
    leave it alone, never drop it as the restore's unfinished copy."""
    from nself_builtins.database.journal import Mark

    forged = Mark(kind="incoming", run=1, target=db, backup="x", phase="restoring").text()
    pg.sql(f"COMMENT ON DATABASE \"{db}\" IS '{forged}'")
    r = cli(target, "db", "backup", "list")
    assert r.returncode == 0, r.stderr
    assert family(pg, db) == [db]
    assert pg.sql("SELECT count(*) FROM ticks", db) == [(100,)]
    forged = Mark(kind="previous", run=1, target=db, backup="x", phase="kept").text()
    pg.sql(f"COMMENT ON DATABASE \"{db}\" IS '{forged}'")
    r = cli(target, "db", "backup", "prune", "--yes")  # drops the databases restores kept
    assert r.returncode == 0, r.stderr
    assert family(pg, db) == [db]


def test_a_killed_verifys_role_someone_took_over_stays(target: Path, pg: Cluster, db: str) -> None:
    """A role a killed verify left, then given a login (someone uses it now), is no longer
    as nself made it: the next command leaves it (it owns nothing, so DROP ROLE would not
    refuse)."""
    with role_only_in_a_backup(target, pg, db, "taken_over", "NOLOGIN") as name:
        r = cli(target, "db", "backup", "verify", name, NSELF_TEST_KILL_AT="verify-roles")
        assert r.returncode == -signal.SIGKILL, r.stderr
        pg.sql("ALTER ROLE taken_over LOGIN PASSWORD 'Taken-over-9f2c'")
        r = cli(target, "db", "backup", "list")
        assert r.returncode == 0, r.stderr
        assert role_names(pg, "taken_over") == ["taken_over"]


def test_a_copy_staged_onto_a_full_disk_is_removed_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Staging copies a dump into the postgres service (``sh -c 'cat > …'`` run there).
    When that disk fills up halfway, the partial copy goes with the error, not at the next
    run: a full disk is not left full. The shell runs here, on a 1 MiB tmpfs, through the
    transport that runs tools on this machine (the same code path as inside the service)."""
    from nself_builtins.database import transport as tr
    from nself_sdk import NselfError

    dump = tmp_path / "big.dump"
    dump.write_bytes(os.urandom(3 * 2**20))
    with tmpfs("1m") as disk:
        monkeypatch.setattr(tr, "STAGE_DIR", str(disk / "nself-stage"))
        here = tr.DirectTransport("127.0.0.1", 1, "nobody", "", "nothing")
        with pytest.raises(NselfError), tr._staged_inside(here, dump, 0x1234):
            raise AssertionError("staged onto a full disk")
        assert list((disk / "nself-stage").iterdir()) == []


def test_a_prune_killed_after_a_manifest_leaves_nothing_after_the_next_backup(
    target: Path, pg: Cluster
) -> None:
    """prune deletes a backup's manifest first (then it is no backup), then its files:
    killed in between, the files are removed by the next backup (prune's pending mark
    names them), never left where no list or prune sees them."""
    folder = target / "backups"
    old = take_backup(target)
    time.sleep(1.1)
    take_backup(target)
    manifest = json.loads((folder / f"{old}.json").read_text())
    manifest["created"] = "2020-01-01T00:00:00+00:00"
    (folder / f"{old}.json").write_text(json.dumps(manifest))
    r = cli(target, "db", "backup", "prune", "--yes", NSELF_TEST_KILL_AT="prune-manifest")
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    assert (folder / old).exists() and not (folder / f"{old}.json").exists()
    time.sleep(2.5)  # past the grace of a temp file just made
    take_backup(target)
    dumps = sorted(p.name for p in folder.glob("backup-*.dump"))
    assert dumps == sorted(p.name[: -len(".json")] for p in folder.glob("*.dump.json"))
    assert len(dumps) == 2 and not list(folder.glob(".nself-*"))
    assert len(list(folder.glob("*.globals.sql"))) == 2


def test_two_backups_at_once_are_two_backups(target: Path, pg: Cluster) -> None:
    """Two `nself db backup` started together (a schedule and a user, the same minute):
    each gets a name of its own, each files match its manifest; neither replaces the other
    while both say they succeeded."""
    import hashlib

    folder = target / "backups"
    procs = [started(target, "db", "backup", "--json") for _ in range(2)]
    names = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
        names.append(json.loads(out[out.index("{") :])["name"])
    assert len(set(names)) == 2, names
    for name in names:
        manifest = json.loads((folder / f"{name}.json").read_text())
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == manifest["sha256"]
