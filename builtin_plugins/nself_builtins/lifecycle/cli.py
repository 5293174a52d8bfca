"""`nself start|stop|restart|down|status|health|logs|urls|exec`: top-level commands, added
to the root without a group name. The logic lives in ``project`` and ``report``."""

from __future__ import annotations

import sys
import threading
import time
from typing import Annotated

import typer

from nself_sdk import Config, NselfError, UsageError
from nself_sdk import console as out

from .project import nginx_tested_first, open_project, selection
from .report import (
    health_exit,
    health_json,
    health_line,
    report_interrupted,
    report_up,
    seconds,
    state_json,
    state_text,
)

PANEL = "Run"
DEFAULT_TIMEOUT = 300
# Outside local with a DEPLOY_HOST, the stack looked at is the one on the server.
EnvOption = Annotated[
    str | None, typer.Option("--env", help="local, staging or prod (its server when deployed).")
]
ServicesArg = Annotated[list[str] | None, typer.Argument(help="Default: every service.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable.")]

app = typer.Typer()


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
    nginx_tested_first(project, chosen)
    began = time.monotonic()
    from . import rolling
    from .progress import ProgressView

    with ProgressView(project.title) as view:
        result = rolling.up(project, chosen, timeout, view)
    if result.started:
        from nself_sdk.host import plugin_manager

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
def stop(services: ServicesArg = None) -> None:
    """Stop services, keeping their containers and data."""
    project = open_project(rebuild=False)
    names = project.resolve(services) if services else None
    project.runtime.stop(names)
    out.ok(f"stopped {', '.join(names) if names else 'the stack'}")


@app.command(rich_help_panel=PANEL)
def restart(
    services: ServicesArg = None,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait.")] = DEFAULT_TIMEOUT,
) -> None:
    """Restart services (applying changed settings) and wait until they are healthy.

    Replicas of a service are restarted one at a time, each once the one before is
    healthy, so its route keeps answering."""
    project = open_project(rebuild=True)
    running = {s.name for s in project.runtime.status() if s.state != "missing"}
    names = project.resolve(services) if services else sorted(running)
    if not names:
        raise NselfError("nothing is running", "start the stack: nself start")
    nginx_tested_first(project, names)
    began = time.monotonic()
    from . import rolling
    from .progress import ProgressView

    with ProgressView(project.title) as view:
        result = rolling.up(project, names, timeout, view, restart=True)
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
def status(as_json: JsonOpt = False, env: EnvOption = None) -> None:
    """Each service's state, health, uptime and URL."""
    from nself_sdk import public_urls

    project = open_project(rebuild=False, env=env)
    states = project.runtime.status()
    urls = public_urls(project.config, project.stack)
    if as_json:
        out.emit_json([state_json(project, s, urls.get(s.name)) for s in states])
        return
    rows = [("SERVICE", "STATE", "HEALTH", "UPTIME", "URL")]
    for s in states:
        rows.append(
            (s.name, state_text(s), s.health or "-", seconds(s.uptime), urls.get(s.name, ""))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        out.info("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[4])
    out.info(_network(project.config))


def _network(config: Config) -> str:
    """The stack network's real name (Compose scopes it to the project), and where it is."""
    from nself_builtins.shared.network import network_line
    from nself_builtins.shared.placement import runs_here

    where = "" if runs_here(config) else config.text("DEPLOY_HOST").strip()
    return network_line(config.project_name, where)


@app.command(rich_help_panel=PANEL)
def health(
    services: ServicesArg = None,
    as_json: JsonOpt = False,
    now: Annotated[
        bool,
        typer.Option("--now", help="Run every check now instead of using the latest probe."),
    ] = False,
    env: EnvOption = None,
) -> None:
    """Check every service concurrently; exit 1 when a core service is down, 3 when another is.

    Down: unhealthy, or stopped (an optional service stopped on purpose is not expected to
    run); a degraded service also makes it exit 3."""
    from dataclasses import replace

    project = open_project(rebuild=False, env=env)
    names = project.resolve(services) if services else None
    # an operation a crash cut short (a restore's swap) is settled while the probes run
    settling = threading.Thread(target=report_interrupted, args=(project,), daemon=True)
    settling.start()
    results = [
        replace(r, title=project.title(r.service)) for r in project.runtime.health(names, now=now)
    ]
    settling.join()
    if as_json:
        out.emit_json([health_json(r) for r in results])
    else:
        width = max((len(r.title) for r in results), default=0)
        for r in results:
            out.info(health_line(r, width))
    code = health_exit(results, project.role)
    if code:
        raise typer.Exit(code)


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
    name = project.one(service)
    printed = 0
    for line in project.runtime.logs(name, follow=follow, since=since, tail=tail):
        out.info(line)
        printed += 1
        if follow:
            sys.stdout.flush()
    if not printed and not since:
        from nself_builtins.shared.silence import no_logs_reason

        why = no_logs_reason(project.runtime, name)
        if why is not None:
            out.warn(f"{name} has no logs: {why}")


@app.command(rich_help_panel=PANEL)
def urls(as_json: JsonOpt = False) -> None:
    """The public URL of every routed service, and of dev tools opened on 127.0.0.1."""
    from nself_sdk import find_project, plan, public_urls

    the_plan = plan(find_project())
    found = public_urls(the_plan.config, the_plan.stack)
    if as_json:
        out.emit_json(found)
        return
    if not found:
        out.info(
            "no service is routed: nothing in this stack has a public URL "
            "(every service is internal or switched off)"
        )
        out.info("  a service gets one with a subdomain, e.g. `nself service add web -t express`")
        out.info(_network(the_plan.config))
        return
    width = max((len(n) for n in found), default=0)
    for name, url in found.items():
        out.info(f"{name.ljust(width)}  {url}")
    out.info(_network(the_plan.config))


@app.command(rich_help_panel=PANEL, context_settings={"allow_interspersed_args": False})
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
    name = project.one(service)
    use_tty = tty if tty is not None else (sys.stdin.isatty() and sys.stdout.isatty())
    sys.stdout.flush()
    code = project.runtime.exec_stream(name, command, tty=use_tty, user=user)
    if code:
        raise typer.Exit(code)
