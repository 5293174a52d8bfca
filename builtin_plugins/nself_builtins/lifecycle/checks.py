"""The ``services`` check of ``nself doctor``."""

from __future__ import annotations

from typing import Literal

from nself_sdk import Config, Finding, NselfError, runtime

Verdict = Literal["ok", "warning", "error"]


def stack_findings(config: Config) -> list[Finding]:
    """One finding per service that should run and does not (or is unhealthy), else one ok."""
    try:
        rt = runtime(config)
        states = rt.status()
    except NselfError as exc:
        return [Finding("services", "warning", f"not checked: {exc.message}", exc.hint)]
    running = [s for s in states if s.running]
    if not running:
        return [Finding("services", "warning", "the stack is not running", "nself start")]
    findings = []
    expected = [s for s in states if s.role != "optional" or s.running]
    for state in expected:
        if state.stopped:
            findings.append(
                Finding(
                    "services",
                    "error" if state.role == "core" else "warning",
                    f"{state.name} was stopped on purpose",
                    f"nself start {state.name}",
                )
            )
        elif not state.running:
            findings.append(
                Finding(
                    "services",
                    "error" if state.role == "core" else "warning",
                    f"{state.name} is {state.state}",
                    f"nself start {state.name}; see `nself logs {state.name}`",
                )
            )
    for result in rt.health([s.name for s in running]):
        if result.status != "healthy":
            level: Verdict = "warning" if result.status == "degraded" else "error"
            why = f": {result.detail}" if result.detail else ""
            findings.append(
                Finding(
                    "services",
                    level,
                    f"{result.service} is {result.status}{why}",
                    result.hint or f"see `nself logs {result.service}`",
                )
            )
    if not findings:
        findings.append(Finding("services", "ok", f"{len(running)} services running and healthy"))
    return findings
