"""A throw-away PostgreSQL cluster for the database tests (real server, no mocks).

Started once per test session from the server binaries of the machine (PostgreSQL 15 in
/usr/lib/postgresql/15/bin, or NSELF_TEST_PG_BINDIR) on a free port in a temporary folder.
As root the server runs as the unprivileged ``postgres`` user, as PostgreSQL requires.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BINDIR = Path(os.environ.get("NSELF_TEST_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
PASSWORD = "test-only-Secret-9f2c"
RUN_AS = "postgres"


def available() -> bool:
    return (BINDIR / "initdb").is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.archive = root / "wal-archive"
        self.port = free_port()
        self.bindir = BINDIR
        self.as_root = os.geteuid() == 0

    # -- process control ------------------------------------------------------------------
    def _as_server_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", RUN_AS, "--", *argv] if self.as_root else argv

    def chown(self, path: Path) -> None:
        if self.as_root:
            entry = pwd.getpwnam(RUN_AS)
            for folder, _dirs, files in os.walk(path):
                os.chown(folder, entry.pw_uid, entry.pw_gid)
                for name in files:
                    os.chown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid)

    def init(self, archive_command: str) -> None:
        self.archive.mkdir(parents=True)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        self.chown(self.root)
        subprocess.run(
            self._as_server_user(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            ),
            check=True,
            capture_output=True,
        )
        pwfile.unlink()
        conf = self.data / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = on\n"
                "wal_level = replica\narchive_mode = on\n"
                f"archive_command = '{archive_command}'\n"
                "archive_timeout = 0\nmax_wal_senders = 4\nmax_connections = 60\n"
                "log_min_messages = warning\n"
            )

    def start(self) -> None:
        subprocess.run(
            self._as_server_user(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        self._watchdog()

    def _watchdog(self) -> None:
        """Stop the server and delete its folder once this process is gone, even if it was
        killed (a timeout, ^C twice): a killed test run must not leave a server behind."""
        stop = " ".join(
            shlex.quote(a)
            for a in self._as_server_user(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
            )
        )
        script = (
            f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 3; done; "
            f"{stop} >/dev/null 2>&1; rm -rf {shlex.quote(str(self.root))}"
        )
        subprocess.Popen(
            ["sh", "-c", script],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            self._as_server_user(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]
            ),
            capture_output=True,
        )

    # -- clients -----------------------------------------------------------------------------
    def url(self, db: str = "postgres") -> str:
        return f"postgres://postgres:{PASSWORD}@127.0.0.1:{self.port}/{db}"

    def connect(self, db: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.url(db), autocommit=True)

    def sql(self, query: str, db: str = "postgres") -> list[tuple[Any, ...]]:
        with self.connect(db) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    @contextlib.contextmanager
    def database(self, name: str) -> Iterator[str]:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.sql(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def archiving_cluster(prefix: str) -> Iterator[Cluster]:
    """A throw-away cluster archiving its WAL with nself's archiver; gone afterwards."""
    if not available():
        pytest.fail(
            f"PostgreSQL server binaries not found in {BINDIR} (scripts/test installs them)"
        )
    from nself_builtins.database.pitr import archive_command

    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)
    cluster = Cluster(root)
    cluster.init(archive_command(str(cluster.archive)))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> Iterator[Cluster]:
    with archiving_cluster("nself-pg-") as cluster:
        yield cluster


@pytest.fixture
def db(pg: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database of the session cluster, dropped afterwards."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    with pg.database(name) as created:
        yield created


def with_plugins(core: str) -> Any:
    """A fixture: the test's ``project`` on its database ``db`` with the core's tables
    (``core``, SQL) and nself's own (``nself db migrate up``), for plugins' migrations to
    run as their roles; afterwards every plugin's role is dropped with what it owns.
    ``sandbox = pg_cluster.with_plugins(CORE)`` in a test module names it."""

    @pytest.fixture
    def fixture(
        project: Path, pg: Cluster, db: str, monkeypatch: pytest.MonkeyPatch, nself: Any
    ) -> Iterator[Path]:
        monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
        pg.sql(core, db)
        assert nself("db", "migrate", "up", cwd=project).code == 0
        try:
            yield project
        finally:
            roles = "SELECT rolname FROM pg_roles WHERE rolname LIKE 'nself_plugin_%'"
            for (role,) in pg.sql(roles):
                pg.sql(f'DROP OWNED BY "{role}"', db)
                pg.sql(f'DROP ROLE "{role}"')

    return fixture
