"""The Docker runtime: Compose v2 for the lifecycle, the Docker SDK for state, health, exec.

Everything is scoped by the Compose project label (``com.docker.compose.project``), never by
container names, so another project's containers are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import IO, Any

from nself_sdk import (
    Config,
    ExecResult,
    HealthResult,
    NselfError,
    Progress,
    ProgressCallback,
    ServiceState,
    UpResult,
    UsageError,
)

from .compose import (
    COMPOSE_FILE,
    ENV_FILE,
    INSTALL_HINT,
    ComposeService,
    compose_command,
    dependents,
    read_project,
    with_dependencies,
)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
# What Compose stamps on a container to decide later whether it must be recreated: the
# hash of the service's definition, and the id of the image it was created from.
CONFIG_HASH_LABEL = "com.docker.compose.config-hash"
IMAGE_LABEL = "com.docker.compose.image"
POLL = 0.5
# A container that crashed this many times while starting is given up on.
MAX_RESTARTS = 2
HEALTH_TIMEOUT = 10.0
# A service without a health check counts as started once it has run this long.
STABLE_AFTER = 3.0
_PORT_TAKEN = re.compile(
    r"(?:Bind for |listen tcp[46]? )\[?([0-9a-fA-F.:]*?)\]?:(\d+)"
    r"(?: failed: port is already allocated|: bind: address already in use)"
)
_ENGINE_TROUBLE = re.compile(
    r"Cannot connect to the Docker daemon|permission denied while trying to connect", re.I
)
_PULL_HINT = (
    "set {var} to an image this host can get (a mirror or private registry), "
    "or pre-load it with `docker load -i image.tar`"
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


def _parse_started(value: str) -> datetime | None:
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
    started = _parse_started(str(state.get("StartedAt") or ""))
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
    )


def image_variable(service: ComposeService) -> str:
    """The setting that overrides a service's image."""
    slot = service.labels.get("org.nself.slot")
    if slot:
        return f"{slot}_IMAGE"
    return f"{service.name.upper().replace('-', '_')}_IMAGE"


class DockerRuntime:
    """Runs one project's generated stack on a Docker engine."""

    name = "docker"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.project = config.project_name
        self.folder = config.project_dir
        self._client: Any = None
        self._services: dict[str, ComposeService] | None = None
        self._built: list[str] = []  # services whose image this runtime built

    # -- plumbing ---------------------------------------------------------------------------
    def _compose_args(self) -> list[str]:
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
        argv = [*self._compose_args(), "--ansi", "never", *args]
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
            raise self._compose_failure(args[0], done.stderr or done.stdout)
        return done

    def _compose_failure(self, verb: str, output: str) -> NselfError:
        low = output.lower()
        if "docker daemon" in low or "permission denied" in low or "connect:" in low:
            return engine_error(output)
        taken = _PORT_TAKEN.search(output)
        if taken:
            return self._port_error(taken.group(1) or "0.0.0.0", int(taken.group(2)))
        lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
        detail = lines[-1] if lines else "no output"
        return NselfError(f"docker compose {verb} failed: {detail}", "run with --debug for details")

    def _port_error(self, host_ip: str, port: int) -> NselfError:
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

    def _api(self, call: Callable[[], Any]) -> Any:
        from docker.errors import APIError, DockerException
        from requests.exceptions import ConnectionError as RequestsConnectionError

        try:
            return call()
        except (APIError, DockerException, RequestsConnectionError, PermissionError) as exc:
            raise engine_error(str(exc)) from exc

    def project_services(self) -> dict[str, ComposeService]:
        if self._services is None:
            self._services = read_project(self.config)
        return self._services

    def _known(self, names: Sequence[str] | None) -> list[str]:
        services = self.project_services()
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

        found = self._api(listing)
        by_service: dict[str, list[Any]] = {}
        for container in found:
            labels = container.labels or {}
            if labels.get(PROJECT_LABEL) != self.project or labels.get(ONEOFF_LABEL) == "True":
                continue
            service = labels.get(SERVICE_LABEL)
            if service:
                by_service.setdefault(service, []).append(container)
        return by_service

    def _container(self, service: str) -> Any:
        self._known([service])
        container = self.containers().get(service)
        if container is None or (container.attrs.get("State") or {}).get("Status") != "running":
            raise NselfError(f"{service} is not running", f"start it: nself start {service}")
        return container

    # -- Runtime interface ----------------------------------------------------------------------
    def check(self) -> None:
        compose_command()
        client = self.client()
        self._api(client.ping)

    def services(self) -> list[str]:
        return list(self.project_services())

    def status(self) -> list[ServiceState]:
        services = self.project_services()
        containers = self.containers()
        states = []
        for name in sorted(set(services) | set(containers)):
            role = services[name].role if name in services else "orphan"
            container = containers.get(name)
            if container is None:
                states.append(ServiceState(name=name, state="missing", role=role))
            else:
                states.append(state_of(name, role, container))
        return states

    def stop(self, services: Sequence[str] | None = None) -> None:
        names = self._known(services) if services else []
        self.compose("stop", *names)

    def restart(self, services: Sequence[str] | None = None) -> None:
        names = self._known(services) if services else []
        self.compose("restart", *names)

    def down(self, volumes: bool = False) -> None:
        args = ["down", "--remove-orphans"]
        if volumes:
            args.append("--volumes")
        self.compose(*args)

    def logs(
        self,
        service: str,
        *,
        follow: bool = False,
        since: str | None = None,
        tail: int | None = None,
    ) -> Iterator[str]:
        self._known([service])
        if service not in self.containers():
            raise NselfError(f"{service} has no container yet", f"start it: nself start {service}")
        args = [*self._compose_args(), "--ansi", "never", "logs", "--no-color", "--no-log-prefix"]
        if follow:
            args.append("--follow")
        if since:
            args += ["--since", since]
        if tail is not None:
            args += ["--tail", str(tail)]
        args.append(service)
        return self._stream_lines(args)

    def _stream_lines(self, argv: list[str]) -> Iterator[str]:
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

    def last_logs(self, service: str, lines: int = 20) -> list[str]:
        """The last log lines of a service, or none when it has no container."""
        try:
            return list(self.logs(service, tail=lines))
        except NselfError:
            return []

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
        if input is not None:
            out, err = io.BytesIO(), io.BytesIO()
            code = self.exec_stream(
                service,
                argv,
                stdin=io.BytesIO(input),
                stdout=out,
                stderr=err,
                env=env,
                user=user,
                workdir=workdir,
            )
            return ExecResult(code, out.getvalue(), err.getvalue())
        container = self._container(service)
        code, streams = self._api(
            lambda: container.exec_run(
                list(argv),
                demux=True,
                environment=dict(env) if env else None,
                user=user or "",
                workdir=workdir,
            )
        )
        stdout, stderr = streams if streams else (b"", b"")
        return ExecResult(int(code if code is not None else 1), stdout or b"", stderr or b"")

    def run(self, service: str, argv: Sequence[str]) -> ExecResult:
        self._known([service])
        # Compose may exit 0 when the image cannot be had and nothing ran: get it first.
        failed = self._fetch_images([service], lambda _progress: None)
        if service in failed:
            raise NselfError(f"{service}: {failed[service]}", self.pull_hint(service))
        done = self.compose(
            "run", "--rm", "--no-deps", "-T", "--quiet-pull", service, *argv, check=False
        )
        if done.returncode == 125 or "no such service" in (done.stderr or "").lower():
            raise self._compose_failure("run", done.stderr or done.stdout)
        return ExecResult(done.returncode, done.stdout.encode(), done.stderr.encode())

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
        container = self._container(service)
        docker_cli = shutil.which("docker")
        if tty and docker_cli is not None:
            # A terminal session: the docker CLI handles raw mode and window resizes.
            args = [docker_cli, "exec", "-it"]
            for key, value in (env or {}).items():
                args += ["-e", f"{key}={value}"]
            if user:
                args += ["-u", user]
            if workdir:
                args += ["-w", workdir]
            return subprocess.call([*args, container.id, *argv])
        source = stdin if stdin is not None else _terminal_in()
        code: int = self._api(
            lambda: _exec_attached(
                self.client().api,
                container.id,
                list(argv),
                source,
                stdout or sys.stdout.buffer,
                stderr or sys.stderr.buffer,
                env=dict(env) if env else None,
                user=user,
                workdir=workdir,
            )
        )
        return code

    # -- health -----------------------------------------------------------------------------------
    def health(
        self, services: Sequence[str] | None = None, *, now: bool = False
    ) -> list[HealthResult]:
        known = self.project_services()
        containers = self.containers()
        if services is None:
            # Optional services nobody started are not expected to run.
            names = [n for n, s in known.items() if s.role != "optional" or n in containers]
        else:
            names = self._known(services)
        results: dict[str, HealthResult] = {}
        threads = []
        for name in names:
            title = known[name].title
            container = containers.get(name)
            if container is None:
                results[name] = HealthResult(
                    name,
                    title,
                    "unhealthy",
                    0.0,
                    "not started",
                    f"start container manually: nself start {name}",
                )
                continue
            state = state_of(name, known[name].role, container)
            if state.state == "paused":
                results[name] = HealthResult(
                    name, title, "degraded", 0.0, "paused", f"resume it: nself restart {name}"
                )
                continue
            if state.state != "running":
                what = state.state
                if state.exit_code is not None:
                    what = f"{state.state} (exit code {state.exit_code})"
                results[name] = HealthResult(
                    name,
                    title,
                    "unhealthy",
                    0.0,
                    what,
                    f"start container manually: nself start {name}",
                )
                continue
            if not now:
                recent = _from_probe(name, title, container)
                if recent is not None:
                    results[name] = recent
                    continue
            thread = threading.Thread(
                target=self._check_one, args=(name, title, state, container, results), daemon=True
            )
            thread.start()
            threads.append((name, title, thread))
        deadline = time.monotonic() + HEALTH_TIMEOUT
        for name, title, thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                results[name] = HealthResult(
                    name,
                    title,
                    "unhealthy",
                    HEALTH_TIMEOUT * 1000,
                    f"check timed out after {HEALTH_TIMEOUT:.0f}s",
                    f"see `nself logs {name}`",
                )
        return [results[n] for n in names]

    def _check_one(
        self,
        name: str,
        title: str,
        state: ServiceState,
        container: Any,
        results: dict[str, HealthResult],
    ) -> None:
        test = list(
            ((container.attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
        )
        if not test or test[0] == "NONE":
            results[name] = HealthResult(name, title, "healthy", 0.0, "running, no health check")
            return
        argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        begun = time.perf_counter()
        try:
            code, output = container.exec_run(argv, demux=False)
        except Exception as exc:  # the engine answered badly for this one container
            results[name] = HealthResult(
                name, title, "unhealthy", 0.0, f"check could not run: {exc}", f"nself logs {name}"
            )
            return
        latency = (time.perf_counter() - begun) * 1000
        text = (output or b"").decode("utf-8", "replace").strip()
        last = text.splitlines()[-1][:120] if text else ""
        if code != 0:
            results[name] = HealthResult(
                name,
                title,
                "unhealthy",
                latency,
                last or f"check failed (exit code {code})",
                f"see `nself logs {name}`, or restart it: nself restart {name}",
            )
        elif state.health == "starting":
            results[name] = HealthResult(name, title, "degraded", latency, "still starting")
        elif state.health == "unhealthy":
            results[name] = HealthResult(
                name, title, "degraded", latency, "recovering (the engine still reports unhealthy)"
            )
        else:
            results[name] = HealthResult(name, title, "healthy", latency)

    # -- up -----------------------------------------------------------------------------------
    def up(
        self,
        services: Sequence[str] | None = None,
        *,
        wait: bool = True,
        timeout: float = 300.0,
        progress: ProgressCallback | None = None,
        isolate: Callable[[str], bool] | None = None,
    ) -> UpResult:
        known = self.project_services()
        names = self._known(services)
        emit = progress or (lambda _p: None)
        may_isolate = isolate or (lambda s: known[s].role != "core")
        targets = with_dependencies(known, names)
        result = UpResult()
        self.check()
        deadline = time.monotonic() + timeout

        # 1. Images: build or pull what is missing, one service's failure at a time.
        for name, reason in self._fetch_images(targets, emit).items():
            self._fail(name, reason, result, may_isolate, emit)
            for other in sorted(dependents(known, name) & set(targets)):
                self._fail(other, f"needs {name}, which failed", result, may_isolate, emit)
        core_failed = [n for n in result.failed if n not in result.isolated]
        if core_failed:
            return result
        targets = [t for t in targets if t not in result.failed]
        if not targets:
            return result

        # 2. Ports: refuse before anything starts if a host port is taken.
        self._check_ports(targets)

        # 3. Start, watching every container until healthy, failed or out of time. Only
        # the containers this `up` leaves are judged: one Compose recreates (its definition
        # or image changed) may still run, healthy, until Compose replaces it.
        baseline = {
            name: (c.id, int(c.attrs.get("RestartCount") or 0))
            for name, c in self.containers().items()
        }
        # Nothing to tell apart on a first start (no container yet): skip asking Compose.
        expected = self._expected(targets) if wait and set(baseline) & set(targets) else {}
        for name in targets:
            emit(Progress(name, "starting"))
        argv = [
            *self._compose_args(),
            "--ansi",
            "never",
            "--progress",
            "plain",
            "up",
            "--detach",
            "--no-build",
            "--pull",
            "never",
            "--remove-orphans",
            *targets,
        ]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            cwd=self.folder,
        )
        output: list[str] = []
        reader = threading.Thread(target=_collect, args=(proc, output), daemon=True)
        reader.start()
        pending = set(targets)
        if wait:
            self._watch(
                pending, proc, deadline, result, emit, may_isolate, baseline, expected, output
            )
        core_down = any(n not in result.isolated for n in result.failed)
        if core_down:
            # A core service failed: report now rather than wait out the others.
            pending.clear()
        if wait:
            # Every target is settled, so Compose has started what it could; it may still
            # be waiting on a dependency that failed: give it a moment, not the timeout.
            deadline = min(deadline, time.monotonic() + (5 if core_down else 15))
        proc_done = _finish(proc, reader, deadline if wait else time.monotonic() + 60)
        text = "".join(output)
        if proc.returncode not in (0, None):
            taken = _PORT_TAKEN.search(text)
            low = text.lower()
            if taken:
                raise self._port_error(taken.group(1) or "0.0.0.0", int(taken.group(2)))
            if "docker daemon" in low or "permission denied" in low:
                raise engine_error(text)
        if not wait:
            if proc.returncode not in (0, None) or not proc_done:
                raise self._compose_failure("up", text)
            result.started = list(targets)
            return result
        for name in sorted(pending):
            state = self._state(name)
            reason = f"not healthy after {timeout:.0f}s"
            if state is not None and state.health:
                reason += f" (health: {state.health})"
            elif state is not None:
                reason = f"{state.state} after {timeout:.0f}s"
            if not proc_done or proc.returncode not in (0, None):
                lines = [ln for ln in text.strip().splitlines() if "rror" in ln]
                if lines and name in lines[-1]:
                    reason = lines[-1].strip()
            self._fail(name, reason, result, may_isolate, emit)
        # 4. Circuit breaker: stop what failed and may be isolated, with what needs it.
        to_stop = set()
        for name in list(result.isolated):
            to_stop.add(name)
            to_stop |= dependents(known, name) & set(targets)
        for name in sorted(to_stop - set(result.failed)):
            self._fail(name, "stopped: it needs an isolated service", result, may_isolate, emit)
        running = sorted(n for n in to_stop if n in self.containers())
        if running:
            self.compose("stop", *running, check=False)
        result.started = [t for t in targets if t not in result.failed]
        for name in self._built:  # the new containers run: older builds can go
            if name in result.started:
                self._drop_previous_builds(name, known[name].image)
        self._built.clear()
        return result

    def _fail(
        self,
        name: str,
        reason: str,
        result: UpResult,
        may_isolate: Callable[[str], bool],
        emit: ProgressCallback,
    ) -> None:
        if name in result.failed:
            return
        result.failed[name] = reason
        if may_isolate(name):
            result.isolated.append(name)
            emit(Progress(name, "isolated", reason))
        else:
            emit(Progress(name, "failed", reason))

    def _state(self, name: str) -> ServiceState | None:
        container = self.containers().get(name)
        if container is None:
            return None
        return state_of(name, self.project_services()[name].role, container)

    def _expected(self, targets: list[str]) -> dict[str, tuple[str, str]]:
        """What each target's container carries once Compose has brought it up to date.

        ``(config hash, image id)``: the hash Compose computes for the service's definition
        in the generated file (``docker compose config --hash``, the value it stamps on the
        container as ``com.docker.compose.config-hash``) and the id of the service's image
        (stamped as ``com.docker.compose.image``). Compose recreates a container when either
        differs. A part that cannot be read is ``""``: such a container is then judged only
        once it is new or Compose has finished.
        """
        done = self.compose("config", "--hash", "*", check=False, timeout=60)
        hashes: dict[str, str] = {}
        if done.returncode == 0:
            for line in done.stdout.splitlines():
                parts = line.split()
                if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[1]):
                    hashes[parts[0]] = parts[1]
        client = self.client()
        known = self.project_services()

        def image_ids() -> dict[str, str]:
            from docker.errors import ImageNotFound

            ids: dict[str, str] = {}
            for name in targets:
                try:
                    ids[name] = str(client.api.inspect_image(known[name].image).get("Id") or "")
                except ImageNotFound:
                    ids[name] = ""
            return ids

        images: dict[str, str] = self._api(image_ids)
        return {name: (hashes.get(name, ""), images.get(name, "")) for name in targets}

    def _watch(
        self,
        pending: set[str],
        proc: subprocess.Popen[str],
        deadline: float,
        result: UpResult,
        emit: ProgressCallback,
        may_isolate: Callable[[str], bool],
        baseline: dict[str, tuple[str, int]],
        expected: dict[str, tuple[str, str]],
        output: list[str],
    ) -> None:
        known = self.project_services()
        phases: dict[str, str] = {}
        while pending and time.monotonic() < deadline:
            finished = proc.poll() is not None
            every = self.all_containers(only=pending)
            for name in sorted(pending):
                found = every.get(name, [])
                old_id = baseline.get(name, ("", 0))[0]
                want = expected.get(name, ("", ""))
                container = next((c for c in found if _current(c, old_id, want)), None)
                if container is None and found and finished and not proc.returncode:
                    container = found[0]  # Compose is done and kept it: it is the one
                if container is None and found:
                    # The old container is still there: Compose has yet to replace it, so
                    # its state (maybe still healthy) says nothing about this start.
                    phase, detail = "recreating", ""
                    if finished:
                        phase, detail = "failed", "was not recreated"
                elif container is None:
                    phase, detail = "creating", ""
                    if finished:
                        phase, detail = "failed", "was not created"
                else:
                    state = state_of(name, known[name].role, container)
                    seen_id, seen_restarts = baseline.get(name, ("", 0))
                    if seen_id == container.id:  # count only the restarts of this start
                        state = replace(state, restarts=max(0, state.restarts - seen_restarts))
                    phase, detail = _phase(state, finished)
                if phase in ("healthy", "running"):
                    pending.discard(name)
                    emit(Progress(name, phase))
                    continue
                if phase == "failed":
                    pending.discard(name)
                    if finished and proc.returncode and detail.startswith("was "):
                        detail += f" ({_last_error(''.join(output))})"  # compose said why
                    self._fail(name, detail, result, may_isolate, emit)
                    if not may_isolate(name):
                        return  # a core service failed: the start has failed
                    continue
                if phases.get(name) != phase:
                    phases[name] = phase
                    emit(Progress(name, phase, detail))
            if pending:
                time.sleep(POLL)

    def _fetch_images(self, targets: list[str], emit: ProgressCallback) -> dict[str, str]:
        """Build or pull the images ``targets`` lack; returns the services that failed."""
        from docker.errors import ImageNotFound

        known = self.project_services()
        client = self.client()

        def present(image: str) -> bool:
            def get() -> bool:
                try:
                    client.images.get(image)
                except ImageNotFound:
                    return False
                return True

            return bool(self._api(get))

        failed: dict[str, str] = {}
        for name in targets:
            service = known[name]
            if not service.image:
                failed[name] = "has no image"
                continue
            if present(service.image):
                continue
            if service.build:
                emit(Progress(name, "building", service.image))
                done = self.compose("build", name, check=False)
                if done.returncode != 0 or not present(service.image):
                    failed[name] = "image build failed: " + _last_error(done.stdout + done.stderr)
                    continue
                self._built.append(name)
            else:
                emit(Progress(name, "pulling", service.image))
                done = self.compose("pull", "--quiet", name, check=False)
                if done.returncode != 0 or not present(service.image):
                    failed[name] = f"image {service.image} cannot be pulled: " + _last_error(
                        done.stdout + done.stderr
                    )
                    continue
            emit(Progress(name, "pulled", service.image))
        return failed

    def _drop_previous_builds(self, service: str, image: str | None) -> None:
        """Remove this project's earlier builds of ``service`` (Compose labels the images it
        builds), so a changed Dockerfile does not leave the old image filling the disk.
        Images a container still uses are kept (the engine refuses to remove them)."""
        from docker.errors import APIError

        if not image:
            return
        client = self.client()
        labels = [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]
        current = self._api(lambda: client.images.get(image)).id
        for old in self._api(lambda: client.images.list(filters={"label": labels})):
            if old.id == current:
                continue
            try:
                client.images.remove(old.id)
            except APIError:  # in use by a container, or already gone
                continue

    def pull_hint(self, service: str) -> str:
        return _PULL_HINT.format(var=image_variable(self.project_services()[service]))

    def _check_ports(self, targets: list[str]) -> None:
        """Fail early when a host port a service publishes is taken by someone else."""
        for host_ip, port in self.taken_ports(targets)[:1]:
            raise self._port_error(host_ip, port)

    def taken_ports(self, targets: list[str] | None = None) -> list[tuple[str, int]]:
        """Host ports ``targets`` publish that something other than their own running
        container holds (empty for a remote engine: its ports are not ours to probe)."""
        if not engine_host().startswith("unix://"):
            return []
        ours = self.containers()
        taken = []
        for name in targets if targets is not None else list(self.project_services()):
            container = ours.get(name)
            if container is not None and (container.attrs.get("State") or {}).get("Running"):
                continue  # it holds its own ports
            taken += [(ip, port) for ip, port in self.project_services()[name].ports
                      if _port_taken(ip, port)]  # fmt: skip
        return taken

    def port_error(self, host_ip: str, port: int) -> NselfError:
        return self._port_error(host_ip, port)


def _current(container: Any, old_id: str, want: tuple[str, str]) -> bool:
    """Is ``container`` the one Compose leaves for its service after this ``up``?

    True when it was created during this ``up`` (its id is not the one seen before), or
    when it already carries the expected config hash and image id, so Compose keeps it.
    """
    if container.id != old_id:
        return True
    config_hash, image_id = want
    if not config_hash:
        return False  # unknown: wait until Compose has finished
    labels = container.labels or {}
    if labels.get(CONFIG_HASH_LABEL) != config_hash:
        return False
    runs = labels.get(IMAGE_LABEL) or str(container.attrs.get("Image") or "")
    return not image_id or runs == image_id


def _nanos(value: Any, default: float) -> float:
    """A Docker duration (nanoseconds) in seconds."""
    return int(value) / 1e9 if value else default


def _from_probe(name: str, title: str, container: Any) -> HealthResult | None:
    """The engine's latest probe of the service's own health check, if it is recent.

    The engine runs every container's check on its interval; reading its result costs
    nothing, while running the check again would cost a process in the container. Returns
    ``None`` (check it now) when there is no probe yet or the engine stopped probing.
    """
    attrs = container.attrs
    config = (attrs.get("Config") or {}).get("Healthcheck") or {}
    test = config.get("Test") or []
    if not test or test[0] == "NONE":
        return HealthResult(name, title, "healthy", 0.0, "running, no health check")
    health = (attrs.get("State") or {}).get("Health") or {}
    log = health.get("Log") or []
    if not log:
        return None
    last = log[-1]
    began, ended = _parse_started(str(last.get("Start"))), _parse_started(str(last.get("End")))
    if began is None or ended is None:
        return None
    interval = _nanos(config.get("Interval"), 30.0)
    timeout = _nanos(config.get("Timeout"), 30.0)
    if (datetime.now(UTC) - ended).total_seconds() > 2 * interval + timeout:
        return None  # stale: the engine is not probing it any more
    latency = max(0.0, (ended - began).total_seconds() * 1000)
    output = str(last.get("Output") or "").strip()
    detail = output.splitlines()[-1][:120] if output else ""
    passed = last.get("ExitCode") == 0
    status = health.get("Status")
    if status == "unhealthy":
        return HealthResult(
            name,
            title,
            "unhealthy",
            latency,
            detail or f"health check failing ({health.get('FailingStreak', 0)} times in a row)",
            f"see `nself logs {name}`, or restart it: nself restart {name}",
        )
    if status == "starting":
        return HealthResult(name, title, "degraded", latency, "still starting")
    if not passed:
        streak = health.get("FailingStreak", 1)
        return HealthResult(
            name,
            title,
            "degraded",
            latency,
            f"last check failed ({streak} in a row){': ' + detail if detail else ''}",
            f"see `nself logs {name}`",
        )
    return HealthResult(name, title, "healthy", latency)


def _phase(state: ServiceState, compose_finished: bool) -> tuple[str, str]:
    if state.state == "running":
        if state.health in ("healthy",):
            return "healthy", ""
        if state.health == "none":
            # Without a health check, staying up for a moment is the best sign there is.
            if state.uptime is not None and state.uptime >= STABLE_AFTER:
                return "running", ""
            return "waiting", "no health check: watching it stay up"
        if state.health == "unhealthy":
            return "failed", "unhealthy (its health check keeps failing)"
        if state.restarts >= MAX_RESTARTS:
            return "failed", f"crashed and restarted {state.restarts} times"
        return "waiting", "health: starting"
    if state.state == "restarting":
        if state.restarts >= MAX_RESTARTS:
            return "failed", f"keeps crashing (restarted {state.restarts} times)"
        return "starting", "restarting"
    if state.state in ("exited", "dead"):
        if state.restarts >= MAX_RESTARTS or compose_finished:
            return "failed", f"exited with code {state.exit_code}"
        return "starting", ""
    if state.state == "created" and compose_finished:
        return "failed", "was created but not started"
    return "starting", state.state


def _collect(proc: subprocess.Popen[str], output: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        output.append(line)


def _finish(proc: subprocess.Popen[str], reader: threading.Thread, deadline: float) -> bool:
    """Wait for compose to exit until ``deadline``; stop it when it is still waiting."""
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=2)
        return False
    reader.join(timeout=2)
    return True


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if "rror" in line or "denied" in line or "not found" in line:
            return line[:200]
    return lines[-1][:200] if lines else "no output"


def _port_taken(host_ip: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host_ip or "0.0.0.0", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _terminal_in() -> IO[bytes] | None:
    """The caller's standard input when something is piped in, else nothing."""
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return None
        sys.stdin.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    return sys.stdin.buffer


def _exec_attached(
    api: Any,
    container_id: str,
    argv: list[str],
    stdin: IO[bytes] | None,
    stdout: IO[bytes],
    stderr: IO[bytes],
    *,
    env: dict[str, str] | None,
    user: str | None,
    workdir: str | None,
) -> int:
    """Run ``argv`` through the engine API with stdin sent and output demultiplexed."""
    from docker.utils.socket import STDERR, frames_iter

    exec_id = api.exec_create(
        container_id,
        argv,
        stdin=stdin is not None,
        stdout=True,
        stderr=True,
        environment=env,
        user=user or "",
        workdir=workdir,
    )["Id"]
    sock = api.exec_start(exec_id, socket=True)
    raw = getattr(sock, "_sock", sock)
    feeder = None
    if stdin is not None:
        feeder = threading.Thread(target=_feed, args=(stdin, raw), daemon=True)
        feeder.start()
    try:
        for stream, data in frames_iter(sock, tty=False):
            target = stderr if stream == STDERR else stdout
            target.write(data)
            target.flush()
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    if feeder is not None:
        feeder.join(timeout=1)
    code = api.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else 1


def _feed(source: IO[bytes], raw: Any) -> None:
    """Copy ``source`` into the exec's socket, then close our side so it sees EOF."""
    try:
        while True:
            chunk = source.read(65536)
            if not chunk:
                break
            raw.sendall(chunk)
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_WR)
