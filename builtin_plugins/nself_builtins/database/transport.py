"""How the database engine reaches PostgreSQL: a small interface, two implementations.

The engine (migrations, backups, verify, restore) only ever asks a ``Transport`` for

* a SQL connection (psycopg 3) to a database of the cluster, and
* to run a PostgreSQL client tool (``pg_dump``, ``pg_restore``, ``psql``...) with its
  standard output/input streamed to/from the caller.

``DirectTransport`` talks to a server it can reach itself (tests, CI, a managed
database): host tools from ``bindir``. ``StackTransport`` talks to the project's
running stack, where Postgres is never published: the tools run *inside* the
postgres service (so their version always matches the server's) and SQL connections
go to the container's address on the project's bridge network.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
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

    def stage(self, path: Path, run: int = 0) -> contextlib.AbstractContextManager[str]:
        """Make a local file readable by the tools; yields the path they see.

        ``run`` is the key of the nself run (``journal.Run``) that stages it: a copy left by
        a run that died is removed by the next one (``clean_staged``)."""
        ...

    def interactive(self, program: str, args: Sequence[str]) -> int:
        """Run a tool attached to the terminal (``nself db shell``)."""
        ...

    def as_login(self, user: str, password: str) -> Transport:
        """The same server, SQL connections logging in as ``user`` (a plugin's own role)."""
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
    lines = [x.strip() for x in (result.stderr or b"").decode("utf-8", "replace").splitlines()]
    lines = [x for x in lines if x]
    # the first error says what went wrong; later ones are often consequences
    errors = [x for x in lines if "error:" in x.lower() or x.startswith(("ERROR", "FATAL"))]
    shown = errors[:2] if errors else lines[-2:]
    detail = "; ".join(shown) or f"exit status {result.returncode}"
    return NselfError(f"{program} failed: {detail}")


_VERSIONS = re.compile(r"server version: (\d+)[^;]*; \S+ version: (\d+)")


def _mismatch_error(program: str, result: subprocess.CompletedProcess[bytes]) -> NselfError | None:
    """A host tool older than the server it reaches: name the setting that picks the
    right client tools (they run on this machine with NSELF_DB_URL)."""
    said = (result.stderr or b"").decode("utf-8", "replace")
    if "server version mismatch" not in said:
        return None
    versions = _VERSIONS.search(said)
    server, mine = versions.groups() if versions else ("?", "?")
    return NselfError(
        f"{program} failed: server version mismatch (the server is PostgreSQL {server}, "
        f"this machine's {program} is from PostgreSQL {mine})",
        f"point NSELF_PG_BINDIR at PostgreSQL {server}'s client tools, e.g. "
        f"NSELF_PG_BINDIR=/usr/lib/postgresql/{server}/bin (Debian: apt-get install "
        f"postgresql-client-{server})",
    )


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

    def as_login(self, user: str, password: str) -> DirectTransport:
        return replace(self, user=user, password=password)

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
                client_encoding="utf8",  # text, not bytes, even from SQL_ASCII databases
            )
        except driver.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NselfError(
                f"cannot connect to PostgreSQL at {self.host}:{self.port}: {first}",
                connect_hint(first),
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
            raise _mismatch_error(program, result) or _tool_error(program, result)
        return result

    @contextlib.contextmanager
    def stage(self, path: Path, run: int = 0) -> Iterator[str]:
        yield str(path)

    def interactive(self, program: str, args: Sequence[str]) -> int:
        return subprocess.call([self._program(program), *args], env=self._env())


STAGE_DIR = "/tmp/nself-stage"  # inside the postgres service: <run key>-<file name>


@contextlib.contextmanager
def _staged_inside(transport: Transport, path: Path, run: int) -> Iterator[str]:
    """Copy a local file into the postgres service for its tools; removed afterwards, or by
    the next run when this one is killed (the file name carries the run's key)."""
    inside = f"{STAGE_DIR}/{run:08x}-{os.getpid()}-{path.name}"  # passed as $0: no quoting
    try:  # a copy cut short (a full disk) goes with the error, not at the next run
        with path.open("rb") as source:
            transport.run_tool(
                "sh",
                ["-c", 'mkdir -p "${0%/*}" && chmod 700 "${0%/*}" && cat > "$0"', inside],
                stdin=source,
            )
        yield inside
    finally:
        with contextlib.suppress(NselfError):  # unreachable: the next run removes it
            transport.run_tool("rm", ["-f", inside], check=False)


STAGED_RUN = re.compile(r"^([0-9a-f]{8})-\d+-[^/]+$")


def clean_staged(transport: Transport, live: set[int], apply: bool = True) -> list[str]:
    """Remove (or with ``apply=False`` only list) copies staged inside the postgres service
    by runs that are not alive."""
    if isinstance(transport, DirectTransport):
        return []
    script = (  # older nself staged as /tmp/nself-<pid>-<name>: gone after a day
        "find /tmp -maxdepth 1 -type f -name 'nself-[0-9]*-*' -mmin +1440 -delete 2>/dev/null;"
        f" ls -1A {STAGE_DIR} 2>/dev/null; true"
    )
    listed = transport.run_tool("sh", ["-c", script], check=False)
    dead = []
    for name in listed.stdout.decode("utf-8", "replace").split("\n"):
        match = STAGED_RUN.match(name)
        if match and int(match.group(1), 16) not in live:
            dead.append(name)
    for start in range(0, len(dead) if apply else 0, 200):
        transport.run_tool(
            "sh",
            ["-c", 'cd "$0" && rm -f -- "$@"', STAGE_DIR, *dead[start : start + 200]],
            check=False,
        )
    return dead


@dataclass
class StackTransport:
    """The project's own stack, reached through the container runtime (``nself_sdk.runtime``).

    Postgres is never published on the host. The tools run *inside* the postgres service
    (``Runtime.exec_stream``, so their version always matches the server's; they use the
    local socket there) and their output streams back to this machine. SQL connections
    (migrations, verification) go to the container's address on the project's bridge
    network, which a Linux Docker host can reach; elsewhere set ``NSELF_DB_URL``.
    """

    config: Any
    user: str
    password: str
    dbname: str
    service: str = "postgres"
    _runtime: Any = None
    _address: str | None = None

    def describe(self) -> str:
        return f"{self.user}@{self.service} (local stack)/{self.dbname}"

    def as_login(self, user: str, password: str) -> StackTransport:
        return replace(self, user=user, password=password)

    def runtime(self) -> Any:
        if self._runtime is None:
            from nself_sdk import runtime

            self._runtime = runtime(self.config)
        return self._runtime

    def _state(self) -> Any:
        runtime = self.runtime()
        state = next((s for s in runtime.status() if s.name == self.service), None)
        if state is None or not state.running:
            raise NselfError(
                f"the {self.service} service is not running", "start the stack with `nself start`"
            )
        return state

    def address(self) -> str:
        if self._address is None:
            state = self._state()
            if getattr(self.runtime(), "name", "") != "docker" or shutil.which("docker") is None:
                raise NselfError(
                    "SQL connections to the stack need the Docker runtime on this machine",
                    "set NSELF_DB_URL to a connection you can reach (e.g. a tunnel)",
                )
            out = subprocess.run(
                [
                    "docker",
                    "inspect",
                    "-f",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                    state.container,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            ips = out.stdout.split()
            if out.returncode != 0 or not ips:
                raise NselfError(f"the {self.service} container has no network address")
            self._address = ips[0]
        return self._address

    def connect(
        self, dbname: str | None = None, autocommit: bool = False
    ) -> psycopg.Connection[Any]:
        direct = DirectTransport(self.address(), 5432, self.user, self.password, self.dbname)
        return direct.connect(dbname, autocommit)

    def _env(self) -> dict[str, str]:
        return {
            "PGUSER": self.user,
            "PGDATABASE": self.dbname,
            "PGHOST": "/var/run/postgresql",
            "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
        }

    def run_tool(
        self,
        program: str,
        args: Sequence[str],
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        import io

        self._state()
        out = stdout if stdout is not None else io.BytesIO()
        err = io.BytesIO()
        code = self.runtime().exec_stream(
            self.service,
            [program, *args],
            stdin=stdin,
            stdout=out,
            stderr=err,
            env=self._env(),
        )
        captured = out.getvalue() if isinstance(out, io.BytesIO) else b""
        result = subprocess.CompletedProcess([program, *args], code, captured, err.getvalue())
        if check and code != 0:
            raise _tool_error(program, result)
        return result

    def stage(self, path: Path, run: int = 0) -> contextlib.AbstractContextManager[str]:
        return _staged_inside(self, path, run)

    def interactive(self, program: str, args: Sequence[str]) -> int:
        import sys

        self._state()
        code: int = self.runtime().exec_stream(
            self.service, [program, *args], tty=sys.stdin.isatty(), env=self._env()
        )
        return code


# Runs a client tool inside the deployed postgres service ($5 = 1 for a terminal).
_SERVER_TOOL = r"""
P=$1; NAME=$2; PGU=$3; PGD=$4; TTY=$5; shift 5
cd "$P/current" 2>/dev/null || { echo "nothing is deployed on this server yet" >&2; exit 40; }
if [ "$TTY" = 1 ]; then T=; else T=-T; fi
compose --project-name "$NAME" --file docker-compose.yml --env-file .env.computed \
  --project-directory . exec $T -e PGUSER="$PGU" -e PGDATABASE="$PGD" \
  -e PGHOST=/var/run/postgresql -e PGCONNECT_TIMEOUT=10 postgres "$@"
"""

# The deployed postgres container's address on the project's network.
_SERVER_ADDRESS = r"""
P=$1; NAME=$2
cd "$P/current" 2>/dev/null || { echo "nothing is deployed on this server yet" >&2; exit 40; }
id=$(compose --project-name "$NAME" --file docker-compose.yml --env-file .env.computed \
  --project-directory . ps -q postgres)
[ -n "$id" ] || { echo "the postgres service is not running on the server" >&2; exit 40; }
docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$id"
"""


@dataclass
class ServerTransport:
    """The stack ``nself deploy`` runs on an environment's server, reached over SSH.

    Like ``StackTransport``, the tools run inside the postgres service (its socket, its
    version) with their streams carried by ssh; SQL connections go through an SSH tunnel to
    the container's address on the server's project network. Postgres is never published.
    """

    server: Any  # nself_builtins.shared.remote.Server
    project: str
    user: str
    password: str
    dbname: str
    _tunnel: tuple[int, Any] | None = None

    def describe(self) -> str:
        return (
            f"{self.user}@postgres on the {self.server.env} server {self.server.host}/{self.dbname}"
        )

    def as_login(self, user: str, password: str) -> ServerTransport:
        return replace(self, user=user, password=password)

    def _args(self, tty: bool) -> tuple[str, ...]:
        return (self.server.path, self.project, self.user, self.dbname, "1" if tty else "0")

    def connect(
        self, dbname: str | None = None, autocommit: bool = False
    ) -> psycopg.Connection[Any]:
        if self._tunnel is None:
            found = self.server.run(_SERVER_ADDRESS, self.server.path, self.project)
            ips = found.stdout.split()
            if found.returncode != 0 or not ips:
                raise NselfError(
                    f"cannot find the postgres service on the {self.server.env} server",
                    f"is it deployed and running? nself releases --env {self.server.env}",
                )
            self._tunnel = self.server.tunnel(ips[0], 5432)
            import atexit

            atexit.register(self.close)
        port = self._tunnel[0]
        direct = DirectTransport("127.0.0.1", port, self.user, self.password, self.dbname)
        return direct.connect(dbname, autocommit)

    def close(self) -> None:
        if self._tunnel is not None:
            self._tunnel[1].terminate()
            self._tunnel[1].wait(timeout=10)
            self._tunnel = None
        self.server.close()

    def run_tool(
        self,
        program: str,
        args: Sequence[str],
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        done: subprocess.CompletedProcess[bytes] = self.server.stream(
            _SERVER_TOOL,
            *self._args(False),
            program,
            *args,
            stdin=stdin,
            stdout=stdout if stdout is not None else subprocess.PIPE,
        )
        result = subprocess.CompletedProcess(
            [program, *args], done.returncode, done.stdout or b"", done.stderr or b""
        )
        if check and result.returncode != 0:
            raise _tool_error(program, result)
        return result

    def stage(self, path: Path, run: int = 0) -> contextlib.AbstractContextManager[str]:
        return _staged_inside(self, path, run)

    def interactive(self, program: str, args: Sequence[str]) -> int:
        done = self.server.stream(_SERVER_TOOL, *self._args(True), program, *args, tty=True)
        return int(done.returncode)


def connect_hint(reason: str) -> str:
    """What to do about a refused connection: a wrong password is not a stopped server."""
    low = reason.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        if os.environ.get("NSELF_DB_URL"):
            return "the server is up but refused the password in NSELF_DB_URL: fix it there"
        return (
            "the database is running but refused POSTGRES_PASSWORD: it keeps the password it "
            "was created with. See where yours comes from (`nself env show --explain "
            "POSTGRES_PASSWORD`) and put the database's back, or set a new one in both with "
            "`nself secrets rotate POSTGRES_PASSWORD`"
        )
    return "is the database running? (`nself start`, or check NSELF_DB_URL)"
