"""What a container runtime offers: the interface behind ``provide_runtime``.

The kernel never calls a runtime: it is a contract between plugins. One plugin implements
it (the builtin one drives Docker Compose v2 and the Docker SDK); commands and other
plugins (database, secrets, ...) talk to the stack only through it, so another engine can
replace Docker without touching them. Nothing here imports a container library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Literal, Protocol, runtime_checkable

# stopped: not running because it was stopped on purpose (`nself stop`), not failed
HealthStatus = Literal["healthy", "degraded", "unhealthy", "stopped"]


@dataclass(frozen=True)
class ServiceState:
    """One service of the project as the engine sees it right now."""

    name: str
    # created | running | restarting | paused | exited | dead | missing (no container)
    state: str
    # healthy | unhealthy | starting | none (no health check) | "" (not running)
    health: str = ""
    uptime: float | None = None  # seconds since the container started, when running
    role: str = ""  # core | optional | plugin | custom | monitoring (from nself labels)
    image: str = ""
    container: str = ""  # engine's id of the container, "" when missing
    exit_code: int | None = None
    restarts: int = 0
    ports: tuple[str, ...] = ()  # published host addresses, e.g. "127.0.0.1:8443->443/tcp"
    stopped: bool = False  # not running because it was stopped on purpose (`nself stop`)
    # The engine's own message when it could not run the container (e.g. "exec: /x: no
    # such file or directory", an unknown capability): "" when it said nothing.
    error: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class HealthResult:
    """The outcome of one active health check."""

    service: str
    title: str
    status: HealthStatus
    latency_ms: float
    detail: str = ""
    hint: str | None = None


@dataclass(frozen=True)
class ExecResult:
    """A finished command run inside a service."""

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def output(self) -> str:
        return self.stdout.decode("utf-8", "replace")


@dataclass(frozen=True)
class Progress:
    """A step of ``up`` for one service, reported to the progress callback.

    ``phase`` is one of: pulling, pulled, building, creating, recreating (the old container
    is still there, waiting to be replaced), starting, waiting, healthy, running, failed,
    isolated.
    """

    service: str
    phase: str
    detail: str = ""


@dataclass
class UpResult:
    """What ``up`` achieved: started services, and failures with their reasons."""

    started: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # service -> reason
    isolated: list[str] = field(default_factory=list)  # failed non-core services, stopped

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def degraded(self) -> bool:
        """Only isolated (non-core) services failed: the core runs."""
        return bool(self.failed) and set(self.failed) <= set(self.isolated)


ProgressCallback = Callable[[Progress], None]


@runtime_checkable
class Runtime(Protocol):
    """A container engine running one project's generated stack.

    ``services`` arguments are service names from the generated stack; ``None`` means all
    of them. Failures the user can act on raise ``NselfError`` with a hint.
    """

    name: str  # e.g. "docker"
    project: str  # the project name the runtime scopes everything by

    def check(self) -> None:
        """Raise ``NselfError`` unless the engine is installed, running and usable."""
        ...

    def services(self) -> list[str]:
        """Every service the generated stack defines, sorted."""
        ...

    def up(
        self,
        services: Sequence[str] | None = None,
        *,
        wait: bool = True,
        timeout: float = 300.0,
        progress: ProgressCallback | None = None,
        isolate: Callable[[str], bool] | None = None,
    ) -> UpResult:
        """Create and start ``services`` (and what they depend on).

        With ``wait``, return once every started service is healthy (or running, when it
        has no health check), or when ``timeout`` seconds have passed. Services for which
        ``isolate(name)`` is true are stopped and reported when they fail, instead of
        failing the whole start (the circuit breaker).
        """
        ...

    def stop(self, services: Sequence[str] | None = None) -> None:
        """Stop containers, keeping them and their data."""
        ...

    def restart(self, services: Sequence[str] | None = None) -> None:
        """Restart running or stopped containers."""
        ...

    def down(self, volumes: bool = False) -> None:
        """Remove the project's containers and networks (and named volumes if asked)."""
        ...

    def status(self) -> list[ServiceState]:
        """The state of every service of the stack, ``missing`` when it has no container."""
        ...

    def health(
        self, services: Sequence[str] | None = None, *, now: bool = False
    ) -> list[HealthResult]:
        """The health of ``services`` (default: all that are expected to run), concurrently.

        A runtime may answer from the engine's own recent probes of each service's health
        check; with ``now`` it runs every check at once instead.
        """
        ...

    def logs(
        self,
        service: str,
        *,
        follow: bool = False,
        since: str | None = None,
        tail: int | None = None,
    ) -> Iterator[str]:
        """Log lines of ``service``; with ``follow`` the iterator blocks for new ones."""
        ...

    def exec(
        self,
        service: str,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """Run ``argv`` in the running ``service`` and capture its output."""
        ...

    def run(self, service: str, argv: Sequence[str]) -> ExecResult:
        """Run ``argv`` in a new, throw-away container of ``service`` and capture its output.

        The container has the service's image, mounts and settings, publishes no port and
        starts nothing the service depends on; it works whether the service runs or not
        (e.g. to test a configuration before it is loaded).
        """
        ...

    def exec_stream(
        self,
        service: str,
        argv: Sequence[str],
        *,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
        tty: bool = False,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        workdir: str | None = None,
    ) -> int:
        """Run ``argv`` in ``service`` with streamed standard streams; return its exit code.

        ``None`` for a stream means the caller's own (the terminal); pass open binary files
        to stream, e.g. ``pg_dump`` output into a file or a dump into ``psql``. ``tty``
        allocates a terminal for interactive use.
        """
        ...
