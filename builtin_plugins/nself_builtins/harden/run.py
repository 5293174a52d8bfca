"""The work behind ``nself harden``: run the suite, print it by layer, apply fixes."""

from __future__ import annotations

from typing import Any

from nself_sdk import EXIT_FAILED, EXIT_OK, UsageError, find_project, load_config, stack
from nself_sdk.console import emit_json, info, paint
from nself_sdk.host import plugin_manager

from .suite import LAYERS, TITLES, Applied, Report, apply_fixes, run, running

MARK = {"ok": "✓", "warning": "!", "error": "✗"}
COLOUR = {"ok": "green", "warning": "yellow", "error": "red"}


def check(env: str | None, layers: list[str]) -> Report:
    """The whole suite (live) for the current project and ``env``."""
    project = find_project()
    pm = plugin_manager(project)
    config = load_config(project, env)
    with running():
        report = run(pm, config, stack(config, pm), live=True)
    if layers:
        report.items = [i for i in report.items if i.layer in layers]
    return report


def harden_command(env: str | None, fix: bool, layers: list[str], as_json: bool) -> int:
    unknown = sorted(set(layers) - set(LAYERS))
    if unknown:
        raise UsageError(f"no layer named {', '.join(unknown)}", "layers: " + ", ".join(LAYERS))
    report = check(env, layers)
    applied: list[Applied] = []
    if fix and report.fixable():
        import contextlib
        import sys

        # What a fix says as it works goes to stderr when stdout carries the JSON answer.
        to = sys.stderr if as_json else sys.stdout
        with running(), contextlib.redirect_stdout(to):
            applied = apply_fixes(report)
        report = check(env, layers)  # what the fixes achieved
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "env": report.env,
                "counts": {lv: report.count(lv) for lv in ("ok", "warning", "error")},
                "layers": {
                    layer: [i.as_dict() for i in items]
                    for layer, items in report.by_layer().items()
                    if not layers or layer in layers
                },
                "fixed": [
                    {"check": a.item.finding.check, "layer": a.item.layer, "changed": a.done}
                    for a in applied
                    if a.done
                ],
                "not_fixed": [
                    {"check": a.item.finding.check, "layer": a.item.layer, "error": a.failed}
                    for a in applied
                    if a.failed
                ],
            }
        )
        return EXIT_OK if report.ok else EXIT_FAILED
    if fix:
        _print_fixes(applied)
    _print(report, layers)
    return EXIT_OK if report.ok else EXIT_FAILED


def _print_fixes(applied: list[Applied]) -> None:
    if not applied:
        info("nothing to fix automatically")
        return
    for a in applied:
        what = f"{a.item.layer}/{a.item.finding.check}"
        if a.done:
            info(f"{paint('fixed', 'green')} {what}: {a.done}")
        else:
            info(f"{paint('not fixed', 'red')} {what}: {a.failed}")
    info("")


def _print(report: Report, layers: list[str]) -> None:
    for layer, items in report.by_layer().items():
        if layers and layer not in layers:
            continue
        info(paint(TITLES[layer], "bold"))
        if not items:
            info("  (no checks)")
        for item in items:
            _line(item.finding, report.env)
    counts = {lv: report.count(lv) for lv in ("ok", "warning", "error")}
    summary = f"{counts['ok']} ok, {counts['warning']} warnings, {counts['error']} errors"
    fixable = len(report.fixable())
    if fixable:
        flag = "" if report.env == "dev" else f" --env {report.env}"
        summary += f"; {fixable} can be fixed with `nself harden{flag} --fix`"
    info(summary)


def _line(f: Any, env: str) -> None:
    info(f"  {paint(MARK[f.level], COLOUR[f.level])} {f.check:<14} {f.message}")
    if f.level != "ok":
        if f.hint:
            info(f"    {'':<14} hint: {f.hint}")
        if f.fix is not None:
            flag = "" if env == "dev" else f" --env {env}"
            info(f"    {'':<14} fix: `nself harden{flag} --fix`")
