"""``nself build`` as a command: the kernel's build (or rollback), then what it did.

Imported without Typer: a bare ``nself build`` runs through ``run_bare_command``.
"""

from __future__ import annotations

from typing import Any

from nself_sdk import NselfError, UsageError
from nself_sdk.console import emit_json, info, ok, warn
from nself_sdk.host import rollback
from nself_sdk.project import BuildResult, build, find_project, public_urls


def run_build(
    check: bool = False, env: str | None = None, undo: bool = False, as_json: bool = False
) -> None:
    """What `nself build` does once its options are parsed."""
    if undo:
        if check:
            raise UsageError("--rollback cannot be combined with --check")
        restored = rollback(find_project(), env)
        if as_json:
            emit_json({"ok": True, "rolled_back": restored})
        else:
            ok(f"restored the previous build ({len(restored)} files)")
            for path, what in restored.items():
                info(f"  {what}: {path}")
            again = "nself build" + (f" --env {env}" if env else "")
            info(f"the env files are unchanged: the next `{again}` redoes it")
        return
    result = build(find_project(), env, check=check)
    for problem in result.plan.warnings:
        warn(problem.message, problem.hint)
    # with --env, the command that builds that target (`nself build` alone builds the
    # current one, which may be another)
    again = "nself build" + (f" --env {result.plan.config.env}" if env else "")
    stale = NselfError("generated files are out of date", f"run `{again}`")
    if as_json:
        data = summary_data(result, check)
        if check and result.changes:
            data.update(error=stale.message, hint=stale.hint)
        emit_json(data)
    elif check:
        _check_report(result)
    else:
        _summary(result)
    if check and result.changes:
        raise stale


def summary_data(result: BuildResult, check: bool = False) -> dict[str, Any]:
    """The build as data. ``changes``: what the build wrote (with --check: what it would
    write); ``up_to_date``: the files on disk match the configuration now (true after a
    build that wrote them, false only when --check finds them stale)."""
    plan = result.plan
    current = not (check and result.changes)
    return {
        "ok": current,
        "env": plan.config.env,
        "project": plan.config.project_name,
        "services": [s.name for s in plan.stack.services],
        "urls": public_urls(plan.config, plan.stack),
        "files": [f.path for f in plan.files],
        "changes": result.changes,
        "folder": _folder(result),
        "up_to_date": current,
        "warnings": [p.message for p in plan.warnings],
    }


def _summary(result: BuildResult) -> None:
    data = summary_data(result)
    services = data["services"]
    ok(f"built {data['project']} for {data['env']}: {len(services)} services")
    info(f"  services: {', '.join(services)}")
    urls: dict[str, str] = data["urls"]
    if urls:
        info("  urls:")
        for name, url in urls.items():
            info(f"    {name:<14} {url}")
    if data["folder"] != ".":
        info(
            f"  files:    {data['folder']}/ ({data['env']}'s own; the local stack's are untouched)"
        )
    changes: dict[str, str] = data["changes"]
    if changes:
        info(f"  changed ({len(changes)}):")
        for path, what in changes.items():
            info(f"    {what:<8} {path}")
    else:
        info("  no changes: every generated file was already up to date")


def _folder(result: BuildResult) -> str:
    """Where the build's files are, relative to the project ("." for the project folder)."""
    plan = result.plan
    return plan.root.relative_to(plan.config.project_dir).as_posix()


def _check_report(result: BuildResult) -> None:
    env = result.plan.config.env
    if result.changes:
        where = "" if _folder(result) == "." else f" in {_folder(result)}/"
        info(f"the configuration is valid ({env}) but the generated files{where} are stale:")
        for path, what in result.changes.items():
            info(f"  would be {what}: {path}")
    else:
        ok(f"the configuration is valid and the generated files are up to date ({env})")
