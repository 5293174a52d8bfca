"""How the database engine reaches PostgreSQL: a small interface, two implementations.

The engine (migrations, backups, verify, restore) only ever asks a ``Transport`` for

* a SQL connection (psycopg 3) to a database of the cluster, and
* to run a PostgreSQL client tool (``pg_dump``, ``pg_restore``, ``psql``...) with its
  standard output/input streamed to/from the caller.

``DirectTransport`` talks to a server it can reach itself (tests, CI, a managed
database): host tools from ``bindir``. ``ComposeTransport`` talks to the project's
running stack, where Postgres is never published: the tools run *inside* the
postgres service (so their version always matches the server's) and SQL connections
go to the container's address on the project's bridge network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

from nself_sdk import NselfError

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT = 10


class Transport(Protocol):
    """What the engine needs from a way of reaching PostgreSQL."""

    dbname: str
    user: str

    def describe(self) -> str:
        """A short human label for messages (never includes a password)."""
        ...

    def connect(
        self, dbname: str | None = None, autocommit: bool = False
    ) -> psycopg.Connection[Any]:
        """A new connection to ``dbname`` (default: the project's database)."""
        ...

    def run_tool(
        self,
        program: str,
        args: Sequence[str],
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a client tool with the connection settings in its environment.

        ``stdout`` receives the tool's output (streamed); otherwise it is captured.
        A failure raises ``NselfError`` with the tool's last error lines when ``check``.
        """
        ...

    def stage(self, path: Path) -> contextlib.AbstractContextManager[str]:
        """Make a local file readable by the tools; yields the path they see."""
        ...

    def interactive(self, program: str, args: Sequence[str]) -> int:
        """Run a tool attached to the terminal (``nself db shell``)."""
        ...


def psycopg_module() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - a broken install
        raise NselfError(
            "the PostgreSQL driver psycopg is not installed", "reinstall nself"
        ) from exc
    return psycopg


def _tool_error(program: str, result: subprocess.CompletedProcess[bytes]) -> NselfError:
    err = (result.stderr or b"").decode("utf-8", "replace").strip().splitlines()
    tail = "; ".join(line.strip() for line in err[-3:]) or f"exit status {result.returncode}"
    return NselfError(f"{program} failed: {tail}")


@dataclass
class DirectTransport:
    """A PostgreSQL server reachable from this machine (host/port/user/password)."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    bindir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url: str, bindir: Path | None = None) -> DirectTransport:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise NselfError(
                f"not a PostgreSQL URL: {parts.scheme}://...", "use postgres://user:pw@host:port/db"
            )
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            dbname=(parts.path or "/postgres").lstrip("/") or "postgres",
            bindir=bindir,
        )

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def connect(
        self, dbname: str | None = None, autocommit: bool = False
    ) -> psycopg.Connection[Any]:
        driver = psycopg_module()
        try:
            conn: psycopg.Connection[Any] = driver.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=dbname or self.dbname,
                autocommit=autocommit,
                connect_timeout=CONNECT_TIMEOUT,
                application_name="nself",
            )
        except driver.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NselfError(
                f"cannot connect to PostgreSQL at {self.host}:{self.port}: {first}",
                "is the database running? (`nself start`, or check NSELF_DB_URL)",
            ) from None
        return conn

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGUSER=self.user,
            PGPASSWORD=self.password,
            PGDATABASE=self.dbname,
            PGCONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
        )
        env.update(self.extra_env)
        return env

    def _program(self, program: str) -> str:
        if self.bindir is not None:
            candidate = self.bindir / program
            if candidate.is_file():
                return str(candidate)
        found = shutil.which(program)
        if found is None:
            raise NselfError(
                f"{program} is not installed on this machine",
                "install the PostgreSQL client tools or set NSELF_PG_BINDIR",
            )
        return found

    def run_tool(
        self,
        program: str,
        args: Sequence[str],
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [self._program(program), *args],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env(),
            check=False,
        )
        if check and result.returncode != 0:
            raise _tool_error(program, result)
        return result

    @contextlib.contextmanager
    def stage(self, path: Path) -> Iterator[str]:
        yield str(path)

    def interactive(self, program: str, args: Sequence[str]) -> int:
        return subprocess.call([self._program(program), *args], env=self._env())


@dataclass
class ComposeTransport:
    """The project's own stack: tools run in the postgres service, SQL over the bridge.

    Postgres is never published on the host. ``docker compose exec`` gives the tools (of
    the server's own version) and streams their output; SQL connections go to the
    container's IP address on the project network, which the Docker host can reach.
    """

    project_dir: Path
    user: str
    password: str
    dbname: str
    service: str = "postgres"
    _address: str | None = None

    def describe(self) -> str:
        return f"{self.user}@{self.service} (local stack)/{self.dbname}"

    def _compose(self) -> list[str]:
        compose = self.project_dir / "docker-compose.yml"
        if not compose.is_file():
            raise NselfError("the stack is not built yet", "run `nself build && nself start`")
        env_file = self.project_dir / ".env.computed"
        return [
            "docker",
            "compose",
            "--project-directory",
            str(self.project_dir),
            "-f",
            str(compose),
            "--env-file",
            str(env_file),
        ]

    def _container(self) -> str:
        if shutil.which("docker") is None:
            raise NselfError("docker is not installed", "install Docker to run the local stack")
        out = subprocess.run(
            [*self._compose(), "ps", "-q", self.service],
            capture_output=True,
            text=True,
            check=False,
        )
        cid = out.stdout.strip().splitlines()
        if out.returncode != 0 or not cid:
            raise NselfError(
                f"the {self.service} service is not running", "start the stack with `nself start`"
            )
        return cid[0]

    def address(self) -> str:
        if self._address is None:
            cid = self._container()
            out = subprocess.run(
                [
                    "docker",
                    "inspect",
                    "-f",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                    cid,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            ips = out.stdout.split()
            if not ips:
                raise NselfError(f"the {self.service} container has no network address")
            self._address = ips[0]
        return self._address

    def connect(
        self, dbname: str | None = None, autocommit: bool = False
    ) -> psycopg.Connection[Any]:
        direct = DirectTransport(self.address(), 5432, self.user, self.password, self.dbname)
        return direct.connect(dbname, autocommit)

    def _exec(self, interactive: bool = False) -> list[str]:
        flags = [] if interactive else ["-T"]
        return [
            *self._compose(),
            "exec",
            *flags,
            "-e",
            f"PGUSER={self.user}",
            "-e",
            f"PGDATABASE={self.dbname}",
            "-e",
            "PGHOST=/var/run/postgresql",
            self.service,
        ]

    def run_tool(
        self,
        program: str,
        args: Sequence[str],
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        self._container()
        result = subprocess.run(
            [*self._exec(), program, *args],
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
        )
        if check and result.returncode != 0:
            raise _tool_error(program, result)
        return result

    @contextlib.contextmanager
    def stage(self, path: Path) -> Iterator[str]:
        cid = self._container()
        inside = f"/tmp/nself-{os.getpid()}-{path.name}"
        subprocess.run(["docker", "cp", str(path), f"{cid}:{inside}"], check=True)
        try:
            yield inside
        finally:
            subprocess.run(
                ["docker", "exec", cid, "rm", "-f", inside], capture_output=True, check=False
            )

    def interactive(self, program: str, args: Sequence[str]) -> int:
        self._container()
        return subprocess.call([*self._exec(interactive=True), program, *args])
