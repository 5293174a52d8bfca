"""The stack running on an environment's server, seen through the ``Runtime`` protocol.

``nself status|health|logs --env prod`` and the plugins that look at a running stack
(``nself doctor --env prod``, ``nself secrets rotate --env prod``) work on the release that
is current on the server. Services change there only through releases: starting,
stopping or recreating them is refused with the way to do it (``nself deploy``).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from nself_builtins.shared.remote import Server
from nself_sdk import (
    Config,
    ExecResult,
    HealthResult,
    NselfError,
    ServiceState,
    UpResult,
)

from . import containers

# Runs Compose on the current release; $3... are Compose's arguments.
_COMPOSE = r"""
P=$1; NAME=$2; shift 2
cd "$P/current" 2>/dev/null || { echo "nothing is deployed on this server yet" >&2; exit 40; }
compose --project-name "$NAME" --file docker-compose.yml --env-file .env.computed \
  --project-directory . --ansi never "$@"
"""

# Every service of the current release, then its containers with start time and restarts.
_STATUS = r"""
P=$1; NAME=$2
cd "$P/current" 2>/dev/null || { echo "nothing is deployed on this server yet" >&2; exit 40; }
set -- --project-name "$NAME" --file docker-compose.yml --env-file .env.computed \
  --project-directory . --ansi never
compose "$@" config --services
echo "@ps"
compose "$@" ps --all --format json
echo "@inspect"
ids=$(compose "$@" ps --all --quiet)
[ -z "$ids" ] || docker inspect -f '{{.Id}} {{.State.StartedAt}} {{.RestartCount}}' $ids
"""


def _started(stamp: str) -> float | None:
    """Seconds since an engine timestamp like 2026-12-03T08:01:02.123456789Z (UTC)."""
    try:  # fromisoformat takes at most microseconds: the fraction is dropped
        moment = datetime.fromisoformat(stamp.partition(".")[0].rstrip("Z") + "+00:00")
    except ValueError:
        return None
    return max(0.0, time.time() - moment.timestamp())


class ServerRuntime:
    """The current release on the environment's server, over SSH."""

    name = "server"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.project = config.project_name
        self._server: Server | None = None

    @property
    def server(self) -> Server:
        if self._server is None:
            import atexit

            self._server = Server.from_config(self.config)
            atexit.register(self._server.close)
        return self._server

    def _compose(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        server = self.server
        return server.run(_COMPOSE, server.path, self.config.project_name, *args, stdin=stdin)

    def _refuse(self, what: str) -> NselfError:
        env = self.config.env
        return NselfError(
            f"{what} on the {env} server: services there change only through releases",
            f"nself deploy {env} (or nself rollback --env {env}); "
            f"`nself releases --env {env}` shows what runs",
        )

    # -- what can be looked at --------------------------------------------------------------
    def check(self) -> None:
        done = self._compose("version")
        if done.returncode != 0:
            raise NselfError(f"the {self.config.env} server: {done.stderr.strip()}")

    def services(self) -> list[str]:
        return sorted(self._compose("config", "--services").stdout.split())

    def status(self) -> list[ServiceState]:
        server = self.server
        done = server.run(_STATUS, server.path, self.config.project_name)
        names, _sep, rest = done.stdout.partition("@ps\n")
        listed, _sep, inspected = rest.partition("@inspect\n")
        engine = containers.inspected(inspected, 3)
        states: dict[str, ServiceState] = {}
        for row in containers.rows(listed):
            stamp, restarts = engine.get(containers.full_id(row, engine), ["", "0"])
            name = str(row.get("Service", ""))
            labels = dict(
                p.split("=", 1) for p in str(row.get("Labels", "")).split(",") if "=" in p
            )
            state = str(row.get("State", "")).lower() or "missing"
            health = str(row.get("Health", "")).lower()
            exit_code = row.get("ExitCode")
            states[name] = ServiceState(
                name=name,
                state=state,
                health=(health or "none") if state == "running" else "",
                uptime=_started(stamp) if stamp and state == "running" else None,
                role=labels.get("org.nself.role", ""),
                image=str(row.get("Image", "")),
                container=str(row.get("ID", "")),
                exit_code=exit_code if isinstance(exit_code, int) and state != "running" else None,
                restarts=int(restarts) if restarts.isdigit() else 0,
            )
        for name in names.split():
            states.setdefault(name, ServiceState(name=name, state="missing"))
        return [states[n] for n in sorted(states)]

    def health(
        self, services: Sequence[str] | None = None, *, now: bool = False
    ) -> list[HealthResult]:
        """From the engine's latest probes on the server (``now`` is not available there)."""
        wanted = set(services) if services else None
        results = []
        env = self.config.env
        for state in self.status():
            if wanted is not None and state.name not in wanted:
                continue
            hint = f"see `nself logs {state.name} --env {env}`; redeploy or roll back"
            if state.state != "running":
                what = (
                    state.state if state.exit_code is None else f"{state.state} ({state.exit_code})"
                )
                results.append(HealthResult(state.name, state.name, "unhealthy", 0.0, what, hint))
            elif state.health == "unhealthy":
                results.append(
                    HealthResult(state.name, state.name, "unhealthy", 0.0, "unhealthy", hint)
                )
            elif state.health == "starting":
                results.append(HealthResult(state.name, state.name, "degraded", 0.0, "starting"))
            else:
                results.append(HealthResult(state.name, state.name, "healthy", 0.0))
        return results

    def logs(
        self,
        service: str,
        *,
        follow: bool = False,
        since: str | None = None,
        tail: int | None = None,
    ) -> Iterator[str]:
        args = ["logs", "--no-color", "--no-log-prefix"]
        if follow:
            args.append("--follow")
        if since:
            args += ["--since", since]
        if tail is not None:
            args += ["--tail", str(tail)]
        server = self.server
        process = server.popen(_COMPOSE, server.path, self.config.project_name, *args, service)
        assert process.stdout is not None
        try:
            for raw in process.stdout:
                yield raw.decode("utf-8", "replace").rstrip("\n")
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=10)
        if process.returncode:
            server.explain_exit(
                process.returncode, process.stderr.read() if process.stderr else b""
            )

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
        args = ["exec", "-T"]
        if user:
            args += ["--user", user]
        if workdir:
            args += ["--workdir", workdir]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        done = self._compose(*args, service, *argv, stdin=input)
        return ExecResult(done.returncode, done.stdout.encode(), done.stderr.encode())

    # -- what changes only through releases ------------------------------------------------
    def up(self, *args: Any, **kwargs: Any) -> UpResult:
        raise self._refuse("starting services")

    def stop(self, services: Sequence[str] | None = None) -> None:
        raise self._refuse("stopping services")

    def restart(self, services: Sequence[str] | None = None) -> None:
        raise self._refuse("restarting services")

    def down(self, volumes: bool = False) -> None:
        raise self._refuse("removing the stack")

    def run(self, service: str, argv: Sequence[str]) -> ExecResult:
        raise self._refuse("running a throw-away container")

    def exec_stream(self, *args: Any, **kwargs: Any) -> int:
        raise self._refuse("an interactive command")
