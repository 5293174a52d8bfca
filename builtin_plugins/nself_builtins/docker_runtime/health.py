"""`nself health`: each service's health, from the engine's latest probe of the service's
own check, or (``now``) by running that check again in its container."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nself_sdk import HealthResult, ServiceState

from .engine import ProjectEngine, parse_started, state_of

HEALTH_TIMEOUT = 10.0


def check_health(
    engine: ProjectEngine,
    services: Sequence[str] | None = None,
    *,
    now: bool = False,
    folder: Path | None = None,
) -> list[HealthResult]:
    """Each service's health: the engine's latest probe of its own check when it is recent
    (``now``: every check run again), all services at once, each within HEALTH_TIMEOUT.
    A service stopped on purpose (``folder``'s notes) is ``stopped``, not unhealthy."""
    from .stopped import on_purpose

    known = engine.services()
    containers = engine.containers()
    stopped = on_purpose(folder, containers) if folder is not None else set()
    if services is None:
        # Optional services nobody started are not expected to run.
        names = [n for n, s in known.items() if s.role != "optional" or n in containers]
    else:
        names = engine.known(services)
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
        if state.state != "running" and name in stopped:
            results[name] = HealthResult(
                name, title, "stopped", 0.0, "stopped on purpose", f"nself start {name}"
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
            target=_check_one, args=(name, title, state, container, results), daemon=True
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
    name: str,
    title: str,
    state: ServiceState,
    container: Any,
    results: dict[str, HealthResult],
) -> None:
    test = list(((container.attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test") or [])
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
    began, ended = parse_started(str(last.get("Start"))), parse_started(str(last.get("End")))
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
