"""What the lifecycle commands print: the outcome of `start`, health lines, state rows."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nself_sdk import EXIT_DEGRADED, EXIT_FAILED, EXIT_OK, NselfError
from nself_sdk import console as out

if TYPE_CHECKING:
    from nself_sdk import HealthResult, ServiceState, UpResult

    from .project import Project

LOG_LINES = 20
ICONS = {
    "healthy": ("✓", "green"),
    "degraded": ("⚠", "yellow"),
    "unhealthy": ("✗", "red"),
    "stopped": ("-", "dim"),
}


def seconds(value: float | None) -> str:
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


def health_json(result: HealthResult) -> dict[str, Any]:
    return {
        "service": result.service,
        "title": result.title,
        "status": result.status,
        "latency_ms": round(result.latency_ms, 1),
        "detail": result.detail,
        "hint": result.hint,
    }


def _image_hint(project: Project, name: str, built: bool) -> str:
    """The setting that runs another image in the service's place (every service has one,
    a bundle's too: ``<PREFIX>IMAGE``), or how to pre-load the image."""
    from nself_builtins.shared.images import image_hint, image_setting

    service = project.stack.service(name)
    labels = service.labels if service is not None else {}
    setting = image_setting(name, labels, project.config.declared)
    return image_hint(setting, service.image if service is not None else "", built)


def _hint_for(project: Project, name: str, reason: str) -> str:
    if "cannot be pulled" in reason or "build failed" in reason:
        return _image_hint(project, name, built="build failed" in reason)
    if reason.startswith("needs "):
        return "it starts once what it needs is fixed"
    if "the engine says:" in reason:
        return (
            "the container never ran, so it has no logs: fix what the engine names (the "
            f"image, its command or entrypoint, a capability) and run `nself start {name}`"
        )
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


def _count(names: list[str]) -> str:
    return f"{len(names)} service{'' if len(names) == 1 else 's'}"


def health_exit(results: list[HealthResult], role: Callable[[str], str]) -> int:
    """The exit status of `health`, as the circuit breaker's for `start`: a core service
    that is down (unhealthy, or stopped) fails (1); any other unhealthy, degraded or
    stopped service is degraded (3). An optional service stopped on purpose is not
    expected to run, so it counts for nothing."""
    down = [r.service for r in results if r.status in ("unhealthy", "stopped")]
    if any(role(name) == "core" for name in down):
        return EXIT_FAILED
    missing = [name for name in down if role(name) != "optional"]
    if missing or any(r.status in ("unhealthy", "degraded") for r in results):
        return EXIT_DEGRADED
    return EXIT_OK


def state_text(state: ServiceState) -> str:
    if state.stopped:
        return "stopped"
    if state.state == "exited" and state.exit_code is not None:
        return f"exited ({state.exit_code})"
    if state.state == "missing":
        return "not created"
    return state.state


def state_json(project: Project, state: ServiceState, url: str | None) -> dict[str, Any]:
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
        "stopped": state.stopped,
        "ports": list(state.ports),
    }


def report_interrupted(project: Project) -> None:
    """Run the plugins' ``interrupted`` check (``diagnose``): an operation a crash cut short
    (a restore's swap) is finished or undone, and said so on stderr. A check that could not
    run is left to ``nself doctor``: the service lines already say what is down."""
    from nself_sdk.host import plugin_manager

    try:
        answers = list(
            plugin_manager(project.folder).answers(
                "diagnose",
                config=project.config,
                stack=project.stack,
                deep=False,
                only=["interrupted"],
            )
        )
    except Exception as exc:  # runs in a background thread: report, never a traceback
        out.warn(f"could not check for interrupted operations: {exc}")
        return
    for _plugin, answer in answers:
        for finding in answer or ():
            if (
                finding.check == "interrupted"
                and finding.level != "ok"
                and not finding.message.startswith("not checked")
            ):
                out.warn(finding.message, finding.hint)
