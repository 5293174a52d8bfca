"""The Docker runtime (``nself_sdk.Runtime``): Compose v2 for the lifecycle, the Docker SDK
for state, health and exec. It puts together the engine of one project (``engine``),
``up`` (``start``), health (``health``) and commands in containers (``execute``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any

from nself_sdk import (
    Config,
    ExecResult,
    HealthResult,
    NselfError,
    ProgressCallback,
    ServiceState,
    UpResult,
)

from .engine import ProjectEngine, state_of

# The label the compose plugin gives every container: the target it was built for.
ENV_LABEL = "org.nself.env"


class DockerRuntime:
    """Runs one project's generated stack on a Docker engine."""

    name = "docker"

    def __init__(self, config: Config) -> None:
        self.engine = ProjectEngine(config)
        self.config = config
        self.project = config.project_name
        self.folder = config.project_dir

    def client(self) -> Any:
        """The Docker SDK client (the ``doctor`` checks read the engine through it)."""
        return self.engine.client()

    def check(self) -> None:
        self.engine.check()

    def services(self) -> list[str]:
        return list(self.engine.services())

    def _own_target(self, containers: Mapping[str, Any]) -> None:
        """Refuse to take another target's containers for this one's: `--env prod` on a
        laptop that runs the dev stack must not report dev's containers as prod's."""
        from nself_builtins.shared.placement import runs_here

        built_for = {str(c.labels.get(ENV_LABEL) or "") for c in containers.values()} - {""}
        env = self.config.env
        if env in built_for:
            return
        if not built_for:
            if runs_here(self.config) or self.config.text("DEPLOY_HOST").strip():
                return
            # Nothing of this project runs here, and staging or prod never does on a
            # machine that has no server for it: it is not "a stack to start" here.
            raise NselfError(
                f"no {env} stack runs on this machine, and no {env} server is configured",
                f"set DEPLOY_HOST in .env.{env} to look at it there (docs/deploy.md), or set "
                f"up this machine as the {env} server with `nself install`",
            )
        other = sorted(built_for)[0]
        hint = f"`--env {other}` (or `nself env switch {other}`) is this machine's stack"
        if not self.config.is_local:
            hint = (
                f"{env} runs on its server: set DEPLOY_HOST in .env.{env} to look at it "
                f"there (docs/deploy.md); {hint}"
            )
        raise NselfError(
            f"no {env} stack runs on this machine: its containers of {self.project} are "
            f"the {', '.join(sorted(built_for))} stack",
            hint,
        )

    def status(self) -> list[ServiceState]:
        from dataclasses import replace

        from .stopped import on_purpose

        containers = self.engine.containers()
        self._own_target(containers)  # before the build is read: it may be another target's
        services = self.engine.services()
        stopped = on_purpose(self.folder, containers)
        states = []
        for name in sorted(set(services) | set(containers)):
            role = services[name].role if name in services else "orphan"
            container = containers.get(name)
            if container is None:
                states.append(ServiceState(name=name, state="missing", role=role))
            else:
                states.append(replace(state_of(name, role, container), stopped=name in stopped))
        return states

    def stop(self, services: Sequence[str] | None = None) -> None:
        from .stopped import note_stopped

        self._own_target(self.engine.containers())  # never another target's containers
        names = self.engine.known(services) if services else []
        self.engine.compose("stop", *names)
        note_stopped(self.folder, names or self.engine.known(None))

    def restart(self, services: Sequence[str] | None = None) -> None:
        from .stopped import forget

        names = self.engine.known(services) if services else []
        forget(self.folder, names or None)
        self.engine.compose("restart", *names)

    def down(self, volumes: bool = False) -> None:
        from .stopped import forget

        self._own_target(self.engine.containers())  # never another target's (or its data)
        args = ["down", "--remove-orphans"]
        if volumes:
            args.append("--volumes")
        self.engine.compose(*args)
        forget(self.folder)

    def logs(
        self,
        service: str,
        *,
        follow: bool = False,
        since: str | None = None,
        tail: int | None = None,
    ) -> Iterator[str]:
        engine = self.engine
        containers = engine.containers()
        self._own_target(containers)  # before the build is read: it may be another target's
        engine.known([service])
        if service not in containers:
            raise NselfError(f"{service} has no container yet", f"start it: nself start {service}")
        args = [*engine.compose_args(), "--ansi", "never", "logs", "--no-color", "--no-log-prefix"]
        if follow:
            args.append("--follow")
        if since:
            args += ["--since", since]
        if tail is not None:
            args += ["--tail", str(tail)]
        args.append(service)
        return engine.stream_lines(args)

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
        from .execute import exec_collect

        return exec_collect(
            self.engine, service, argv, input=input, env=env, user=user, workdir=workdir
        )

    def run(self, service: str, argv: Sequence[str]) -> ExecResult:
        from .start import fetch_images

        engine = self.engine
        engine.known([service])
        # Compose may exit 0 when the image cannot be had and nothing ran: get it first.
        failed = fetch_images(engine, [service], lambda _progress: None)
        if service in failed:
            raise NselfError(f"{service}: {failed[service]}", self.pull_hint(service))
        # `compose run` exits 0 whatever the command did (Compose 2.40): the container is
        # started detached under a name of its own, and its exit status and output come
        # from the engine; it is removed afterwards whatever happened.
        import secrets

        name = f"{engine.project}-{service}-run-{secrets.token_hex(6)}"
        done = engine.compose(
            "run",
            "--detach",
            "--no-deps",
            "--quiet-pull",
            "--name",
            name,
            service,
            *argv,
            check=False,
        )
        client = engine.client()
        try:
            container = engine.api(lambda: client.containers.get(name))
        except NselfError:
            raise engine.compose_failure("run", done.stderr or done.stdout) from None
        try:
            status = engine.api(lambda: container.wait(timeout=None))
            stdout = engine.api(lambda: container.logs(stdout=True, stderr=False))
            stderr = engine.api(lambda: container.logs(stdout=False, stderr=True))
        finally:
            engine.api(lambda: container.remove(force=True, v=True))
        return ExecResult(int(status.get("StatusCode", 1)), stdout, stderr)

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
        from .execute import exec_stream

        return exec_stream(
            self.engine,
            service,
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            tty=tty,
            env=env,
            user=user,
            workdir=workdir,
        )

    def health(
        self, services: Sequence[str] | None = None, *, now: bool = False
    ) -> list[HealthResult]:
        from .health import check_health

        self._own_target(self.engine.containers())
        return check_health(self.engine, services, now=now, folder=self.folder)

    def up(
        self,
        services: Sequence[str] | None = None,
        *,
        wait: bool = True,
        timeout: float = 300.0,
        progress: ProgressCallback | None = None,
        isolate: Callable[[str], bool] | None = None,
    ) -> UpResult:
        from .start import Start
        from .stopped import forget

        # whatever this start brings up is no longer stopped on purpose, started or not
        forget(self.folder, self.engine.known(services) if services else None)
        start = Start(
            self.engine, services, wait=wait, timeout=timeout, progress=progress, isolate=isolate
        )
        return start.run()

    def pull_hint(self, service: str) -> str:
        from nself_builtins.shared.images import image_hint, image_setting

        known = self.engine.services()[service]
        setting = image_setting(service, known.labels, self.config.declared)
        return image_hint(setting, known.image, built=known.build)

    def taken_ports(self, targets: list[str] | None = None) -> list[tuple[str, int]]:
        """Host ports ``targets`` publish that something else holds."""
        return self.engine.taken_ports(targets)

    def port_error(self, host_ip: str, port: int) -> NselfError:
        return self.engine.port_error(host_ip, port)
