"""``nself harden``: the hardening suite over five layers (network, authentication,
authorization, data, audit).

Every capability checks what it owns through the ``harden`` hook; this package presents
the findings, applies the safe fixes (``--fix``), runs the static part of the suite inside
every build outside dev (``validate_files``: errors refuse the build, warnings print) and
joins
``nself doctor --deep``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nself_sdk import Config, Finding, Problem, Stack, hookimpl

if TYPE_CHECKING:
    from typer import Typer


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import app as harden_app

    app.add_typer(harden_app, name="harden", rich_help_panel="Run")


@hookimpl
def validate_files(config: Config, stack: Stack) -> list[Problem]:
    """Outside dev every build runs the static suite (configuration and project files)."""
    from .suite import is_running

    if config.is_local or is_running():
        return []
    from nself_sdk.host import plugin_manager

    from .suite import run

    pm = config.pluginmanager or plugin_manager(config.project_dir)
    report = run(pm, config, stack, live=False)
    flag = f" --env {config.env}"
    return [
        Problem(
            item.finding.level,
            f"harden: {item.layer}/{item.finding.check}: {item.finding.message}",
            (item.finding.hint or f"see `nself harden{flag}`")
            + (f" (or `nself harden{flag} --fix`)" if item.finding.fix else ""),
        )
        for item in report.items
        if item.finding.level != "ok"
    ]


@hookimpl
def diagnose(config: Config, stack: Stack, deep: bool, only: list[str]) -> list[Finding]:
    """``harden`` (deep): the whole suite, this machine or the server included."""
    if not deep or (only and "harden" not in only):
        return []
    from nself_sdk.host import plugin_manager

    from .suite import run, running

    pm = config.pluginmanager or plugin_manager(config.project_dir)
    with running():
        report = run(pm, config, stack, live=True)
        # Outside dev the build's validation already reported the static findings.
        shown = (
            set()
            if config.is_local
            else {
                (i.finding.check, i.finding.message)
                for i in run(pm, config, stack, live=False).items
                if i.finding.level != "ok"
            }
        )
    found = []
    for item in report.items:
        f = item.finding
        if f.level != "ok" and (f.check, f.message) in shown:
            continue
        found.append(Finding("harden", f.level, f"{item.layer}/{f.check}: {f.message}", f.hint))
    counts = {level: report.count(level) for level in ("ok", "warning", "error")}
    if not any(f.level != "ok" for f in found):
        return [
            Finding(
                "harden",
                "ok",
                f"{counts['ok']} hardening checks pass"
                + (f" ({counts['warning']} warnings above)" if counts["warning"] else ""),
            )
        ]
    return [f for f in found if f.level != "ok"]
