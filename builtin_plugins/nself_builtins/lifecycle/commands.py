"""The lifecycle commands. Imported when the CLI is assembled: keep module imports light."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nself_sdk import EXIT_DEGRADED, NselfError, UsageError
from nself_sdk import console as out

if TYPE_CHECKING:
    from nself_sdk import Config, HealthResult, Runtime, ServiceState, Stack, UpResult

PANEL = "Run"
# Outside local with a DEPLOY_HOST, the stack looked at is the one on the server.
EnvOption = Annotated[
    str | None, typer.Option("--env", help="local, staging or prod (its server when deployed).")
]
DEFAULT_TIMEOUT = 300
LOG_LINES = 20
ICONS = {"healthy": ("✓", "green"), "degraded": ("⚠", "yellow"), "unhealthy": ("✗", "red")}


@dataclass
class Project:
    """What the commands need: config, the built stack, its runtime."""

    folder: Path
    config: Config
    stack: Stack
    runtime: Runtime
    changes: dict[str, str]

    def title(self, name: str) -> str:
        service = self.stack.service(name)
        return service.display if service is not None else name

    def role(self, name: str) -> str:
        service = self.stack.service(name)
        return service.role if service is not None else ""

    def resolve(self, names: list[str]) -> list[str]:
        """Service names from what a user typed: service, CS_N_NAME or plugin name."""
        known = {s.name for s in self.stack.services}
        resolved = []
        for raw in names:
            if raw in known:
                resolved.append(raw)
                continue
            host = raw.lower().replace("_", "-")
            owned = sorted(n for n, plugin in self.stack.owners.items() if plugin == raw)
            titled = sorted(s.name for s in self.stack.services if s.display.lower() == raw.lower())
            if host in known:
                resolved.append(host)
            elif owned:
                resolved.extend(owned)
            elif titled:
                resolved.extend(titled)
            else:
                raise UsageError(
                    f"unknown service {raw!r}",
                    f"the stack has: {', '.join(sorted(known))} "
                    "(optional services must be enabled in the env files and built first)",
                )
        return list(dict.fromkeys(resolved))


def open_project(rebuild: bool, env: str | None = None) -> Project:
    """The project, rebuilt first when ``rebuild`` (cheap: only changed files are written)."""
    from nself_sdk import build, find_project, plan, runtime

    folder = find_project()
    changes: dict[str, str] = {}
    if rebuild:
        result = build(folder, env)
        the_plan = result.plan
        changes = result.changes
    else:
        the_plan = plan(folder, env)
    return Project(folder, the_plan.config, the_plan.stack, runtime(the_plan.config), changes)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    value = int(value)
    if value < 60:
        return f"{value}s"
    if value < 3600:
        return f"{value // 60}m{value % 60:02d}s"
    if value < 86400:
        return f"{value // 3600}h{value % 3600 // 60:02d}m"
    return f"{value // 86400}d{value % 86400 // 3600:02d}h"


def _latency(ms: float) -> str:
    return f"{ms:.0f}ms" if ms < 10000 else f"{ms / 1000:.1f}s"


def health_line(result: HealthResult, width: int = 0) -> str:
    icon, color = ICONS[result.status]
    title = result.title.ljust(width)
    line = f"{out.paint(icon, color)} {title} {result.status}"
    if result.status == "healthy":
        line += f" ({_latency(result.latency_ms)})"
    elif result.detail:
        line += f"  {result.detail}"
    if result.status != "healthy" and result.hint:
        line += f"  {result.hint}"
    return line


def _pull_hint(project: Project, name: str) -> str:
    service = project.stack.service(name)
    slot = service.labels.get("org.nself.slot") if service is not None else None
    var = f"{slot}_IMAGE" if slot else f"{name.upper().replace('-', '_')}_IMAGE"
    return (
        f"set {var} to an image this host can get (a mirror or private registry), "
        "or pre-load it (`docker load -i image.tar`)"
    )


def _hint_for(project: Project, name: str, reason: str) -> str:
    if "cannot be pulled" in reason or "build failed" in reason:
        return _pull_hint(project, name)
    if reason.startswith("needs "):
        return "it starts once what it needs is fixed"
    return f"see `nself logs {name}`; fix it and run `nself start {name}`"


def _print_last_logs(project: Project, name: str) -> None:
    from nself_sdk import scrub

    try:
        lines = list(project.runtime.logs(name, tail=LOG_LINES))
    except NselfError:
        return
    if lines:
        print(f"  last {len(lines)} log lines of {name}:", file=sys.stderr)
        for line in lines:
            print(f"    {scrub(line)}", file=sys.stderr)


def report_up(project: Project, result: UpResult, began: float) -> int:
    """Print the outcome of ``up``; returns the exit status (0, 1 or EXIT_DEGRADED)."""
    took = time.monotonic() - began
    core_failed = [n for n in result.failed if n not in result.isolated]
    for name in core_failed:
        reason = result.failed[name]
        out.error(
            f"{project.title(name)} ({name}) failed to start: {reason}",
            _hint_for(project, name, reason),
        )
        if "cannot be pulled" not in reason and not reason.startswith("needs "):
            _print_last_logs(project, name)
    if core_failed:
        return 1
    for name in result.isolated:
        reason = result.failed[name]
        out.warn(
            f"{project.title(name)} ({name}) isolated by the circuit breaker: {reason}",
            _hint_for(project, name, reason),
        )
    from nself_sdk import public_urls

    urls = public_urls(project.config, project.stack)
    if result.isolated:
        out.info(
            f"{out.paint('⚠', 'yellow')} stack is degraded: {_count(result.started)} up, "
            f"{len(result.isolated)} isolated ({', '.join(result.isolated)}) in {took:.1f}s"
        )
    else:
        out.ok(f"stack is up: {_count(result.started)} healthy in {took:.1f}s")
    for name, url in urls.items():
        if name in result.started or name not in project.stack.owners:
            out.info(f"  {name:<14} {url}")
    return EXIT_DEGRADED if result.isolated else 0


def selection(project: Project, services: list[str], all_: bool, with_: list[str]) -> list[str]:
    """Which services `start` brings up: required ones, plus `--all` / `--with`."""
    everything = [s.name for s in project.stack.services]
    if all_:
        return everything
    required = [s.name for s in project.stack.services if s.role != "optional"]
    if with_:
        return list(dict.fromkeys(required + project.resolve(with_ + services)))
    if services:
        return project.resolve(services)
    return required


def register(app: typer.Typer) -> None:
    @app.command(rich_help_panel=PANEL)
    def start(
        services: Annotated[
            list[str] | None, typer.Argument(help="Only these services (and what they need).")
        ] = None,
        all_: Annotated[
            bool, typer.Option("--all", help="Also every enabled optional service.")
        ] = False,
        with_: Annotated[
            list[str] | None,
            typer.Option("--with", help="Optional services to add: --with minio redis mail."),
        ] = None,
        timeout: Annotated[
            int, typer.Option("--timeout", help="Seconds to wait for the stack to be healthy.")
        ] = DEFAULT_TIMEOUT,
        env: Annotated[str | None, typer.Option("--env", help="local, staging or prod.")] = None,
    ) -> None:
        """Start the stack (rebuilding stale files first) and wait until it is healthy.

        Exit status: 0 healthy; 1 a core service failed; 3 degraded (a failed optional,
        plugin or custom service was isolated, the core runs).
        """
        if timeout <= 0:
            raise UsageError("--timeout must be a positive number of seconds")
        project = open_project(rebuild=True, env=env)
        if project.changes:
            shown = ", ".join(f"{p} ({w})" for p, w in project.changes.items())
            out.info(f"rebuilt generated files: {shown}")
        chosen = selection(project, services or [], all_, with_ or [])
        began = time.monotonic()
        from .progress import ProgressView

        with ProgressView(project.title) as view:
            result = project.runtime.up(chosen, wait=True, timeout=timeout, progress=view)
        if result.started:
            from nself_sdk import plugin_manager

            plugin_manager(project.folder).hook.stack_started(
                config=project.config,
                stack=project.stack,
                runtime=project.runtime,
                services=list(result.started),
            )
        code = report_up(project, result, began)
        if code:
            raise typer.Exit(code)

    @app.command(rich_help_panel=PANEL)
    def stop(
        services: Annotated[
            list[str] | None, typer.Argument(help="Default: every service.")
        ] = None,
    ) -> None:
        """Stop services, keeping their containers and data."""
        project = open_project(rebuild=False)
        names = project.resolve(services) if services else None
        project.runtime.stop(names)
        out.ok(f"stopped {', '.join(names) if names else 'the stack'}")

    @app.command(rich_help_panel=PANEL)
    def restart(
        services: Annotated[
            list[str] | None, typer.Argument(help="Default: every service.")
        ] = None,
        timeout: Annotated[
            int, typer.Option("--timeout", help="Seconds to wait.")
        ] = DEFAULT_TIMEOUT,
    ) -> None:
        """Restart services (applying changed settings) and wait until they are healthy."""
        project = open_project(rebuild=True)
        running = {s.name for s in project.runtime.status() if s.state != "missing"}
        names = project.resolve(services) if services else sorted(running)
        if not names:
            raise NselfError("nothing is running", "start the stack: nself start")
        began = time.monotonic()
        project.runtime.restart([n for n in names if n in running])
        from .progress import ProgressView

        with ProgressView(project.title) as view:
            result = project.runtime.up(names, wait=True, timeout=timeout, progress=view)
        code = report_up(project, result, began)
        if code:
            raise typer.Exit(code)

    @app.command(rich_help_panel=PANEL)
    def down(
        volumes: Annotated[
            bool, typer.Option("--volumes", "-v", help="Also delete the data volumes.")
        ] = False,
        confirm: Annotated[
            bool, typer.Option("--confirm", help="Confirm deleting data (prod).")
        ] = False,
    ) -> None:
        """Remove the stack's containers and network (data volumes only with --volumes)."""
        project = open_project(rebuild=False)
        if volumes:
            from nself_sdk import require_confirmation

            require_confirmation(
                project.config, "delete-data", confirm, detail="deletes the stack's volumes"
            )
        project.runtime.down(volumes=volumes)
        what = "containers, network and volumes" if volumes else "containers and network"
        out.ok(f"removed {project.config.project_name}'s {what}")

    @app.command(rich_help_panel=PANEL)
    def status(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
        env: EnvOption = None,
    ) -> None:
        """Each service's state, health, uptime and URL."""
        from nself_sdk import public_urls

        project = open_project(rebuild=False, env=env)
        states = project.runtime.status()
        urls = public_urls(project.config, project.stack)
        if as_json:
            out.emit_json([_state_json(project, s, urls.get(s.name)) for s in states])
            return
        rows = [("SERVICE", "STATE", "HEALTH", "UPTIME", "URL")]
        for s in states:
            rows.append(
                (s.name, _state_text(s), s.health or "-", _seconds(s.uptime), urls.get(s.name, ""))
            )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            out.info(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4]
            )

    @app.command(rich_help_panel=PANEL)
    def health(
        services: Annotated[
            list[str] | None, typer.Argument(help="Default: every service.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
        now: Annotated[
            bool,
            typer.Option("--now", help="Run every check now instead of using the latest probe."),
        ] = False,
        env: EnvOption = None,
    ) -> None:
        """Check every service concurrently; exit 1 when one is unhealthy, 3 when degraded."""
        project = open_project(rebuild=False, env=env)
        names = project.resolve(services) if services else None
        results = project.runtime.health(names, now=now)
        results = [_retitle(project, r) for r in results]
        if as_json:
            out.emit_json(
                [
                    {
                        "service": r.service,
                        "title": r.title,
                        "status": r.status,
                        "latency_ms": round(r.latency_ms, 1),
                        "detail": r.detail,
                        "hint": r.hint,
                    }
                    for r in results
                ]
            )
        else:
            width = max((len(r.title) for r in results), default=0)
            for r in results:
                out.info(health_line(r, width))
        if any(r.status == "unhealthy" for r in results):
            raise typer.Exit(1)
        if any(r.status == "degraded" for r in results):
            raise typer.Exit(EXIT_DEGRADED)

    @app.command(rich_help_panel=PANEL)
    def logs(
        service: Annotated[str, typer.Argument(help="Service (or CS_N_NAME / plugin) name.")],
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
        since: Annotated[
            str | None, typer.Option("--since", help="Since a time: 10m, 2h, 2026-05-01T10:00.")
        ] = None,
        tail: Annotated[int | None, typer.Option("--tail", "-n", help="Last N lines.")] = None,
        env: EnvOption = None,
    ) -> None:
        """Print a service's logs (secrets masked)."""
        if tail is not None and tail < 0:
            raise UsageError("--tail must be 0 or more")
        project = open_project(rebuild=False, env=env)
        names = project.resolve([service])
        if len(names) != 1:
            raise UsageError(f"{service!r} names several services: {', '.join(names)}")
        for line in project.runtime.logs(names[0], follow=follow, since=since, tail=tail):
            out.info(line)
            if follow:
                sys.stdout.flush()

    @app.command(rich_help_panel=PANEL)
    def urls(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    ) -> None:
        """The public URL of every routed service, and of dev tools opened on 127.0.0.1."""
        from nself_sdk import plan, public_urls

        the_plan = plan(_find())
        found = public_urls(the_plan.config, the_plan.stack)
        if as_json:
            out.emit_json(found)
            return
        width = max((len(n) for n in found), default=0)
        for name, url in found.items():
            out.info(f"{name.ljust(width)}  {url}")

    @app.command(
        rich_help_panel=PANEL,
        context_settings={"allow_interspersed_args": False},
    )
    def exec(
        service: Annotated[str, typer.Argument(help="Service to run the command in.")],
        command: Annotated[list[str], typer.Argument(help="The command, after `--`.")],
        tty: Annotated[
            bool | None, typer.Option("--tty/--no-tty", help="Allocate a terminal (default: auto).")
        ] = None,
        user: Annotated[str | None, typer.Option("--user", "-u", help="Run as this user.")] = None,
    ) -> None:
        """Run a command inside a running service: nself exec postgres -- psql -U postgres."""
        if command and command[0] == "--":
            command = command[1:]
        if not command:
            raise UsageError("no command given", "nself exec SERVICE -- COMMAND [ARGS...]")
        project = open_project(rebuild=False)
        names = project.resolve([service])
        if len(names) != 1:
            raise UsageError(f"{service!r} names several services: {', '.join(names)}")
        use_tty = tty if tty is not None else (sys.stdin.isatty() and sys.stdout.isatty())
        sys.stdout.flush()
        code = project.runtime.exec_stream(names[0], command, tty=use_tty, user=user)
        if code:
            raise typer.Exit(code)


def _count(names: list[str]) -> str:
    return f"{len(names)} service{'' if len(names) == 1 else 's'}"


def _find() -> Path:
    from nself_sdk import find_project

    return find_project()


def _retitle(project: Project, result: HealthResult) -> HealthResult:
    from dataclasses import replace

    return replace(result, title=project.title(result.service))


def _state_text(state: ServiceState) -> str:
    if state.state == "exited" and state.exit_code is not None:
        return f"exited ({state.exit_code})"
    if state.state == "missing":
        return "not created"
    return state.state


def _state_json(project: Project, state: ServiceState, url: str | None) -> dict[str, Any]:
    return {
        "service": state.name,
        "title": project.title(state.name),
        "role": state.role or project.role(state.name),
        "state": state.state,
        "health": state.health or None,
        "uptime_s": None if state.uptime is None else round(state.uptime, 1),
        "url": url,
        "image": state.image or None,
        "restarts": state.restarts,
        "exit_code": state.exit_code,
        "ports": list(state.ports),
    }
