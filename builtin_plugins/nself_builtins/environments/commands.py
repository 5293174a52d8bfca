"""``nself env switch|status|show``: never prints a secret value."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from nself_builtins.shared.envs import services_using
from nself_sdk import Config, NselfError, UsageError, find_project, load_config, plan
from nself_sdk import build as run_build
from nself_sdk.console import emit_json, info, ok, warn
from nself_sdk.envfiles import (
    COMPUTED,
    MANIFEST,
    canonical_env,
    current_env_file,
    layer_files,
    parse_text,
    target_env,
    write_atomic,
)

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def label(env: str) -> str:
    return f"{env} (local)" if env == "dev" else env


def target_source(project: Path, env: str | None) -> str:
    """Where the current target comes from, in the kernel's order of precedence."""
    if env:
        return "--env"
    if os.environ.get("NSELF_ENV"):
        return "NSELF_ENV"
    if current_env_file(project).is_file():
        return ".nself/env (nself env switch)"
    return "default"


# -- switch -------------------------------------------------------------------------------
def _named(value: str) -> str | None:
    try:
        return canonical_env(value)
    except NselfError:
        return None


def switch(target: str) -> None:
    try:
        env = canonical_env(target, "nself env switch")
    except NselfError as exc:
        raise UsageError(exc.message, exc.hint) from None
    project = find_project()
    marker = current_env_file(project)
    try:
        before = target_env(project) if not os.environ.get("NSELF_ENV") else None
    except NselfError:  # a damaged .nself/env: switching is how to repair it
        before = None
    write_atomic(marker, env + "\n")
    ok(f"target environment: {label(env)}" + (f" (was {label(before)})" if before else ""))
    info(f"  layers: {' < '.join(layer_files(env))}")
    shell = os.environ.get("NSELF_ENV")
    if shell and _named(shell) != env:  # one that names no environment wins too: refused
        warn(
            f"NSELF_ENV={shell} is set in your shell and still wins over this",
            "unset NSELF_ENV to use the switched environment",
        )
    try:
        run_build(project, env, check=True)
    except NselfError as exc:
        warn(f"the {env} configuration does not build yet: {exc.message}", exc.hint)
        return
    info("next: nself build")


# -- status -------------------------------------------------------------------------------
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _built_settings(project: Path) -> dict[str, str] | None:
    path = project / COMPUTED
    if not path.is_file():
        return None
    return {e.key: e.raw for e in parse_text(path.read_text(encoding="utf-8"), COMPUTED)}


def status(env: str | None, as_json: bool) -> None:
    project = find_project()
    target = target_env(project, env)  # an unknown --env: a usage error
    report = status_report(project, env, target)
    if as_json:
        emit_json(report)
        return
    _print_status(report)


def status_report(project: Path, env: str | None, target: str) -> dict[str, Any]:
    """The target's env layers, its last build and how far the files are from it now."""
    config: Config | None = None
    problem: str | None = None
    try:
        config = load_config(project, target)
    except NselfError as exc:
        problem = exc.message
    from nself_builtins.shared.placement import build_folder

    # the target's own build: the project folder, or .nself/targets/ENV for a server's
    root = project / (build_folder(project, target) or "")
    last = _last_manifest(root / MANIFEST)
    report: dict[str, Any] = {
        "env": target,
        "source": target_source(project, env),
        "layers": _layers(project, target, config),
        "built": last is not None,
        "last_build_env": (last or {}).get("env"),
        "edited_by_hand": [],
        "out_of_date": {},
        "settings_changed": {},
        "problem": problem,
    }
    if last is not None:
        report["edited_by_hand"] = sorted(
            path
            for path, digest in last.get("files", {}).items()
            if (root / path).is_file() and path != COMPUTED and _digest(root / path) != digest
        )
    if config is not None:
        try:
            result = run_build(project, target, check=True)
        except NselfError as exc:
            report["problem"] = exc.message
        else:
            report["out_of_date"] = result.changes
            report["settings_changed"] = _settings_changed(root, config)
    return report


def _layers(project: Path, target: str, config: Config | None) -> list[dict[str, Any]]:
    """Each env layer of ``target``: present, and how many settings it sets and wins."""
    layers = []
    for name in layer_files(target):
        path = project / name
        entry: dict[str, Any] = {"file": name, "present": path.is_file()}
        if config is not None and path.is_file():
            entry["settings"] = sum(
                1 for key in config.names() for e in config.origins(key) if e.file == name
            )
            entry["winning"] = sum(
                1 for key in config.names() if config.origins(key)[-1].file == name
            )
        layers.append(entry)
    return layers


def _last_manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        last: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return last


def _settings_changed(root: Path, config: Config) -> dict[str, str]:
    """The settings added, removed or changed since the last build (none when unknown)."""
    built = _built_settings(root)
    if built is None:
        return {}
    now = {k: config.get(k) or "" for k in config.names()}
    changed = {k: "added" for k in now if k not in built}
    changed.update({k: "removed" for k in built if k not in now})
    changed.update({k: "changed" for k in now if k in built and built[k] != now[k]})
    return dict(sorted(changed.items()))


def _print_status(report: dict[str, Any]) -> None:
    info(f"target:  {label(report['env'])}  (from {report['source']})")
    info("layers (later wins):")
    for layer in report["layers"]:
        if not layer["present"]:
            info(f"  {layer['file']:<14} (not present)")
        elif "settings" in layer:
            info(
                f"  {layer['file']:<14} {layer['settings']} settings, {layer['winning']} in effect"
            )
        else:
            info(f"  {layer['file']:<14} present")
    if report["problem"]:
        warn(f"the configuration does not build: {report['problem']}")
    if not report["built"]:
        info("last build: never (run `nself build`)")
        return
    if report["last_build_env"] != report["env"]:
        info(f"last build: for {label(report['last_build_env'])}, not {label(report['env'])}")
    changes = report["out_of_date"]
    settings = report["settings_changed"]
    if not changes and not settings and not report["edited_by_hand"] and not report["problem"]:
        ok("generated files are up to date with the env files")
        return
    for path, what in changes.items():
        info(f"  would be {what}: {path}")
    for name, what in settings.items():
        info(f"  setting {what} since the last build: {name}")
    for path in report["edited_by_hand"]:
        warn(f"{path} was edited by hand since the last build; `nself build` overwrites it")
    if changes or settings:
        info("run `nself build` to apply")


# -- show ---------------------------------------------------------------------------------
def show(env: str | None, as_json: bool, explain: str | None, match: str | None = None) -> None:
    project = find_project()
    config = load_config(project, env)
    if explain:
        _explain(project, config, explain, as_json)
        return
    rows: dict[str, dict[str, Any]] = {
        name: {
            "value": config.redacted(name),
            "source": _describe(config.where(name), short=True),
            "secret": config.is_secret(name),
        }
        for name in config.names()
        if not match or match.upper() in name.upper()
    }
    if as_json:
        emit_json({"env": config.env, "settings": rows})
        return
    info(f"# resolved configuration for {label(config.env)}; secrets are redacted")
    width = max((len(n) for n in rows), default=0)
    for name, row in rows.items():
        info(f"{name + '=' + row['value']:<{width + 20}}  # {row['source']}")


def _explain(project: Path, config: Config, key: str, as_json: bool) -> None:
    name = key.strip()
    origins = config.origins(name)
    if not origins:
        close = difflib.get_close_matches(name.upper(), config.names(), n=3)
        raise NselfError(
            f"{name} is not set for {config.env}",
            f"did you mean {', '.join(close)}?" if close else "see `nself env show`",
        )
    winner = origins[-1]
    refs = sorted(set(_REF.findall(winner.raw))) if not winner.literal else []
    declared = config.declared.get(name)
    users = _services_using(project, config, name)
    data: dict[str, Any] = {
        "name": name,
        "env": config.env,
        "secret": config.is_secret(name),
        "value": config.redacted(name),
        "set_by": winner.where,
        "overrides": [e.where for e in reversed(origins[:-1])],
        "refers_to": refs,
        "declared_default": declared is not None and declared.default is not None,
        "description": declared.description if declared else "",
        "used_by": users,
    }
    if as_json:
        emit_json(data)
        return
    info(f"{name}{' (secret)' if data['secret'] else ''} for {label(config.env)}")
    if data["description"]:
        info(f"  {data['description']}")
    info(f"  value:      {data['value']}")
    info(f"  set by:     {_describe(winner.where)}")
    if data["overrides"]:
        info(f"  overrides:  {', '.join(_describe(w) for w in data['overrides'])}")
    elif data["declared_default"] and winner.file != "(default)":
        info("  overrides:  the plugin's declared default")
    if refs:
        info(f"  refers to:  {', '.join('${' + r + '}' for r in refs)}")
    if users:
        info(f"  used by:    {', '.join(users)}")


def _describe(where: str, short: bool = False) -> str:
    if where == "(default)":
        return where if short else "(default declared by a plugin)"
    if where == COMPUTED:
        return "(derived)" if short else "derived at build time (.env.computed)"
    return where


def _services_using(project: Path, config: Config, name: str) -> list[str]:
    """Services whose compose definition refers to ``name``, directly or through others."""
    try:
        stack = plan(project, config.env).stack
    except NselfError:
        return []
    return services_using(config, stack, {name})
