"""``nself secrets generate|rotate|audit``: strong secrets in each target's own file
(``.env.secrets``, ``.env.secrets.staging``, ``.env.secrets.prod``; mode 0600),
and the build's refusal of missing, dev-stub or weak secrets outside dev (``policy.py``).

Values are never printed: commands name secrets, never show them. The work is done in
``commands.py``, imported only when a ``secrets`` command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nself_sdk import Config, Finding, GeneratedFile, Problem, Setting, Stack, hookimpl

if TYPE_CHECKING:
    from typer import Typer


@hookimpl
def validate_files(config: Config, files: list[GeneratedFile]) -> list[Problem]:
    """Outside dev, every secret the files use is set, not the dev stub, and strong."""
    if config.is_local:
        return []
    from .policy import secret_problems

    return secret_problems(config, files)


@hookimpl
def prepare_env_files(project_dir: Path, env: str) -> None:
    """A project from before each target had its own secrets file gets staging's and
    prod's, copied from ``.env.secrets`` (lossless, said once), when one of them is read."""
    if env != "dev":
        from nself_builtins.shared.secrets import split_said

        split_said(project_dir)


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import PANEL
    from .cli import app as commands

    app.add_typer(commands, rich_help_panel=PANEL)


@hookimpl
def diagnose(config: Config, only: list[str]) -> list[Finding]:
    """``secrets``: the audit of ``nself secrets audit`` (weak, reused, dev stubs outside
    local, committed, missing, readable files); values are never shown."""
    if only and "secrets" not in only:
        return []
    from .commands import audit_findings

    _env, checked, found, _readable_ok = audit_findings(config.project_dir, config.env)
    if not found:
        return [Finding("secrets", "ok", f"{checked} secrets checked: no findings")]
    findings = []
    for item in found:
        serious = item["kind"] in ("readable", "dev-stub", "committed") or not config.is_local
        findings.append(
            Finding(
                "secrets",
                "error" if serious and item["kind"] not in ("reused", "shared") else "warning",
                f"{item['kind']}: {item['name']}: {item['message']}",
                "nself secrets generate (missing), nself secrets rotate NAME (weak or reused)",
            )
        )
    return findings


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting(
            "ROTATION_MAX_AGE_DAYS",
            "365",
            "Days after which `nself harden` asks to rotate a secret nself set (0: never).",
        )
    ]


@hookimpl
def harden(config: Config, stack: Stack, live: bool) -> list[Finding]:
    """``secrets`` (weak, dev stubs, missing, reused, committed), ``secret-age`` and
    ``secret-files`` (readable by others); fixes rotate, generate or chmod."""
    from .hardening import findings

    return findings(config, stack, live)
