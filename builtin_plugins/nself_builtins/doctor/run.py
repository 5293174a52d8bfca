"""Collecting the findings of every plugin's ``diagnose``."""

from __future__ import annotations

from nself_sdk import (
    Finding,
    NselfError,
    UsageError,
    build,
    find_project,
)
from nself_sdk.host import plugin_manager


def diagnose_project(env: str | None, deep: bool, only: list[str]) -> list[tuple[str, Finding]]:
    """``(plugin, finding)`` for every check (only those named in ``only``, if any)."""
    folder = find_project()
    wanted = set(only)
    findings: list[tuple[str, Finding]] = []
    try:
        result = build(folder, env, check=True)  # validates and compares, writes nothing
    except NselfError as exc:  # nothing else can be checked without a valid configuration
        problems = getattr(exc, "problems", None) or [exc]
        return [("doctor", Finding("config", "error", p.message, p.hint)) for p in problems]
    plan = result.plan
    if not wanted or "config" in wanted:
        services = len(plan.stack.services)
        findings.append(
            ("doctor", Finding("config", "ok", f"valid for {plan.config.env}: {services} services"))
        )
        if result.changes:
            stale = ", ".join(sorted(result.changes))
            findings.append(
                (
                    "doctor",
                    Finding(
                        "config",
                        "warning",
                        f"generated files are stale: {stale}",
                        "run `nself build" + (f" --env {plan.config.env}`" if env else "`"),
                    ),
                )
            )
        for problem in plan.warnings:
            findings.append(("doctor", Finding("config", "warning", problem.message, problem.hint)))
    pm = plugin_manager(folder)
    for plugin, answer in pm.answers(
        "diagnose", config=plan.config, stack=plan.stack, deep=deep, only=sorted(wanted)
    ):
        for finding in answer:
            if not wanted or finding.check in wanted:
                findings.append((plugin, finding))
    # What everything else rests on first: configuration, engine, services; then the rest.
    first = {"config": 0, "engine": 1, "services": 2}
    findings.sort(key=lambda item: first.get(item[1].check, len(first)))
    unknown = wanted - {finding.check for _plugin, finding in findings}
    if unknown:
        raise UsageError(
            f"no check named {', '.join(sorted(unknown))}"
            + ("" if deep else " (or it runs only with --deep)"),
            "run `nself doctor --deep` to see every check's name",
        )
    return findings
