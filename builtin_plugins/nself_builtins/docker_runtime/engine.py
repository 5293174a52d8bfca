"""One project's stack on a Docker engine: Compose v2 for what it runs, the Docker SDK for
what it sees (its containers, their states).

Everything is scoped by the Compose project label (``com.docker.compose.project``), never by
container names, so another project's containers are never touched.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from nself_sdk import Config, NselfError, ServiceState, UsageError

from .compose import (
    COMPOSE_FILE,
    ENV_FILE,
    INSTALL_HINT,
    ComposeService,
    compose_command,
    read_project,
)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
# What Compose stamps on a container to decide later whether it must be recreated: the
# hash of the service's definition, and the id of the image it was created from.
CONFIG_HASH_LABEL = "com.docker.compose.config-hash"
IMAGE_LABEL = "com.docker.compose.image"
PORT_TAKEN = re.compile(
    r"(?:Bind for |listen tcp[46]? )\[?([0-9a-fA-F.:]*?)\]?:(\d+)"
    r"(?: failed: port is already allocated|: bind: address already in use)"
)
_ENGINE_TROUBLE = re.compile(
    r"Cannot connect to the Docker daemon|permission denied while trying to connect", re.I
)


def engine_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def engine_error(message: str) -> NselfError:
    """Turn what the SDK or the CLI said about the engine into one line and a hint."""
    host = engine_host()
    low = message.lower()
    if "permission denied" in low or "permissionerror" in low:
        return NselfError(
            f"no permission to use the Docker engine at {host}",
            "add your user to the docker group (`sudo usermod -aG docker $USER`, then log in "
            "again) or run nself as root",
        )
    socket_path = host[len("unix://") :] if host.startswith("unix://") else ""
    if socket_path and not os.path.exists(socket_path) and shutil.which("docker") is None:
        return NselfError(
            f"Docker is not installed (no docker command, no engine socket at {socket_path})",
            INSTALL_HINT,
        )
    markers = (
        "filenotfounderror",
        "no such file",
        "connection refused",
        "connectionrefused",
        "cannot connect to the docker daemon",
        "connection aborted",
        "is the docker daemon running",
        "timed out",
        "max retries",
    )
    if any(m in low for m in markers):
        return NselfError(
            f"the Docker engine is not running (cannot reach {host})",
            "start it (`sudo systemctl start docker`, or `dockerd &`), or fix DOCKER_HOST",
        )
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return NselfError(f"the Docker engine at {host} failed: {first}", "check `docker info`")


def parse_started(value: str) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    main, _, frac = value.rstrip("Z").partition(".")
    try:
        stamp = datetime.fromisoformat(main)
    except ValueError:
        return None
    micros = int((frac[:6] or "0").ljust(6, "0")) if frac[:6].isdigit() else 0
    return stamp.replace(microsecond=micros, tzinfo=UTC)


def _ports(attrs: dict[str, Any]) -> tuple[str, ...]:
    found = []
    for inner, bindings in sorted(
        ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).items()
    ):
        for binding in bindings or ():
            found.append(f"{binding.get('HostIp') or '0.0.0.0'}:{binding.get('HostPort')}->{inner}")
    return tuple(found)


def state_of(name: str, role: str, container: Any) -> ServiceState:
    attrs: dict[str, Any] = container.attrs
    state = attrs.get("State") or {}
    status = str(state.get("Status") or "unknown")
    health = (state.get("Health") or {}).get("Status")
    if health is None:
        has_check = bool(((attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test"))
        health = "starting" if has_check and status == "running" else "none"
    started = parse_started(str(state.get("StartedAt") or ""))
    uptime = None
    if status == "running" and started is not None:
        uptime = max(0.0, (datetime.now(UTC) - started).total_seconds())
    return ServiceState(
        name=name,
        state=status,
        health=health if status == "running" else "",
        uptime=uptime,
        role=role,
        image=str((attrs.get("Config") or {}).get("Image") or ""),
        container=str(attrs.get("Id") or "")[:12],
        exit_code=state.get("ExitCode") if status in ("exited", "dead") else None,
        restarts=int(attrs.get("RestartCount") or 0),
        ports=_ports(attrs),
        error=str(state.get("Error") or "").strip(),
    )


class ProjectEngine:
    """The engine and Compose, for one project's generated stack."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.project = config.project_name
        self.folder = config.project_dir
        self._client: Any = None
        self._services: dict[str, ComposeService] | None = None
        self.built: list[str] = []  # services whose image this runtime built

    # -- Compose ------------------------------------------------------------------------------
    def compose_args(self) -> list[str]:
        if not (self.folder / ENV_FILE).is_file():
            raise NselfError(f"{ENV_FILE} has not been generated yet", "run `nself build`")
        return [
            *compose_command(),
            "--project-name",
            self.project,
            "--file",
            str(self.folder / COMPOSE_FILE),
            "--env-file",
            str(self.folder / ENV_FILE),
            "--project-directory",
            str(self.folder),
        ]

    def compose(
        self, *args: str, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker compose`` on this project and capture its output."""
        argv = [*self.compose_args(), "--ansi", "never", *args]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, cwd=self.folder
            )
        except subprocess.TimeoutExpired as exc:
            raise NselfError(
                f"docker compose {args[0]} did not finish within {timeout:.0f}s",
                "check `docker info`; the engine may be overloaded",
            ) from exc
        said = (done.stderr or "") + (done.stdout or "")
        if _ENGINE_TROUBLE.search(said):
            # Compose may exit 0 when it could not reach the engine at all.
            raise engine_error(said)
        if check and done.returncode != 0:
            raise self.compose_failure(args[0], done.stderr or done.stdout)
        return done

    def compose_failure(self, verb: str, output: str) -> NselfError:
        low = output.lower()
        if "docker daemon" in low or "permission denied" in low or "connect:" in low:
            return engine_error(output)
        taken = PORT_TAKEN.search(output)
        if taken:
            return self.port_error(taken.group(1) or "0.0.0.0", int(taken.group(2)))
        lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
        detail = lines[-1] if lines else "no output"
        return NselfError(f"docker compose {verb} failed: {detail}", "run with --debug for details")

    def port_error(self, host_ip: str, port: int) -> NselfError:
        settings = [
            n
            for n in self.config.names()
            if n.endswith("PORT") and self.config.text(n) == str(port)
        ]
        where = f"set {' or '.join(settings)}" if settings else "change the host port"
        return NselfError(
            f"host port {port} ({host_ip}) is already taken by another program or container",
            f"stop what uses it (`ss -ltnp 'sport = :{port}'`), or {where} in .env.local "
            "and run `nself build`",
        )

    # -- the engine -----------------------------------------------------------------------------
    def client(self) -> Any:
        """The Docker SDK client, connected on first use."""
        if self._client is None:
            import docker
            from docker.errors import DockerException

            try:
                self._client = docker.from_env(timeout=60)
            except DockerException as exc:
                raise engine_error(str(exc)) from exc
        return self._client

    def api(self, call: Callable[[], Any]) -> Any:
        from docker.errors import APIError, DockerException
        from requests.exceptions import ConnectionError as RequestsConnectionError

        try:
            return call()
        except (APIError, DockerException, RequestsConnectionError, PermissionError) as exc:
            raise engine_error(str(exc)) from exc

    def services(self) -> dict[str, ComposeService]:
        if self._services is None:
            self._services = read_project(self.config)
        return self._services

    def known(self, names: Sequence[str] | None) -> list[str]:
        services = self.services()
        if names is None:
            return list(services)
        unknown = [n for n in names if n not in services]
        if unknown:
            raise UsageError(
                f"unknown service {', '.join(unknown)}",
                f"the stack has: {', '.join(services) or 'no services'}",
            )
        return list(dict.fromkeys(names))

    def containers(self, only: set[str] | None = None) -> dict[str, Any]:
        """This project's service containers by service name (one-off runs excluded).

        With ``only``, just those services' containers are inspected (cheaper polling).
        When a service has several (Compose is replacing one), the newest is given.
        """
        return {name: found[0] for name, found in self.all_containers(only).items()}

    def all_containers(self, only: set[str] | None = None) -> dict[str, list[Any]]:
        """Every container of each service, newest first.

        While Compose recreates a service, its old container (renamed) and the new one
        exist side by side for a moment.
        """
        client = self.client()

        def listing() -> list[Any]:
            from docker.errors import NotFound

            summaries = client.api.containers(
                all=True, filters={"label": [f"{PROJECT_LABEL}={self.project}"]}
            )
            found = []
            for summary in sorted(summaries, key=lambda s: -int(s.get("Created") or 0)):
                labels = summary.get("Labels") or {}
                if only is not None and labels.get(SERVICE_LABEL) not in only:
                    continue
                try:  # a container may vanish between the listing and its inspection
                    attrs = client.api.inspect_container(summary["Id"])
                except NotFound:
                    continue
                found.append(client.containers.prepare_model(attrs))
            return found

        found = self.api(listing)
        by_service: dict[str, list[Any]] = {}
        for container in found:
            labels = container.labels or {}
            if labels.get(PROJECT_LABEL) != self.project or labels.get(ONEOFF_LABEL) == "True":
                continue
            service = labels.get(SERVICE_LABEL)
            if service:
                by_service.setdefault(service, []).append(container)
        return by_service

    def running(self, service: str) -> Any:
        """The running container of ``service`` (an error when it does not run)."""
        self.known([service])
        container = self.containers().get(service)
        if container is None or (container.attrs.get("State") or {}).get("Status") != "running":
            raise NselfError(f"{service} is not running", f"start it: nself start {service}")
        return container

    def check(self) -> None:
        """Compose v2 is installed and the engine answers."""
        compose_command()
        client = self.client()
        self.api(client.ping)

    def state(self, name: str) -> ServiceState | None:
        container = self.containers().get(name)
        if container is None:
            return None
        return state_of(name, self.services()[name].role, container)

    def stream_lines(self, argv: list[str]) -> Iterator[str]:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            cwd=self.folder,
        )
        try:
            assert proc.stdout is not None
            yield from (line.rstrip("\n") for line in proc.stdout)
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait()

    def taken_ports(self, targets: list[str] | None = None) -> list[tuple[str, int]]:
        """Host ports ``targets`` publish that something other than their own running
        container holds (empty for a remote engine: its ports are not ours to probe)."""
        if not engine_host().startswith("unix://"):
            return []
        ours = self.containers()
        taken = []
        for name in targets if targets is not None else list(self.services()):
            container = ours.get(name)
            if container is not None and (container.attrs.get("State") or {}).get("Running"):
                continue  # it holds its own ports
            taken += [(ip, port) for ip, port in self.services()[name].ports
                      if _port_taken(ip, port)]  # fmt: skip
        return taken


def _port_taken(host_ip: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host_ip or "0.0.0.0", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False
