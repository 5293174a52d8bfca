"""``nself doctor``: a top-level command (added to the root without a group name); the
findings come from ``run.diagnose_project``."""

from __future__ import annotations

from typing import Annotated

import typer

PANEL = "Run"
MARK = {"ok": "✓", "warning": "!", "error": "✗"}

app = typer.Typer()


@app.command("doctor", rich_help_panel=PANEL)
def doctor(
    deep: Annotated[
        bool, typer.Option("--deep", help="Also the slow checks (e.g. restore a backup).")
    ] = False,
    check: Annotated[
        list[str] | None,
        typer.Option("--check", help="Only this check (repeatable), e.g. ssl."),
    ] = None,
    env: Annotated[str | None, typer.Option("--env", help="local, staging or prod.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Check configuration, engine, services, certificates, migrations, backups, secrets.

    Exit 1 when a check fails.
    """
    from nself_sdk.console import emit_json, info, paint

    from .run import diagnose_project

    findings = diagnose_project(env, deep, list(check or []))
    if as_json:
        emit_json(
            [
                {
                    "plugin": plugin,
                    "check": f.check,
                    "level": f.level,
                    "message": f.message,
                    "hint": f.hint,
                }
                for plugin, f in findings
            ]
        )
    else:
        colour = {"ok": "green", "warning": "yellow", "error": "red"}
        for _plugin, f in findings:
            info(f"{paint(MARK[f.level], colour[f.level])} {f.check:<11} {f.message}")
            if f.hint and f.level != "ok":
                info(f"  {'':<11} hint: {f.hint}")
        counts = {level: sum(f.level == level for _p, f in findings) for level in MARK}
        info(f"{counts['ok']} ok, {counts['warning']} warnings, {counts['error']} errors")
    if any(f.level == "error" for _p, f in findings):
        from nself_sdk import EXIT_FAILED

        raise typer.Exit(EXIT_FAILED)
