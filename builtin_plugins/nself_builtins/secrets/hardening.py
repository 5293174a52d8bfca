"""The secrets plugin's part of the hardening suite: strength, dev stubs, reuse, age and
who may read the files that hold them. Names are shown, values never."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from nself_sdk import Config, Finding, Stack
from nself_sdk.envfiles import secrets_file

from .commands import readable_findings, set_dates, value_findings

LAYER = "authentication"
MAX_AGE = "ROTATION_MAX_AGE_DAYS"


def used_by(config: Config, stack: Stack) -> set[str]:
    """The secrets the stack's services use, directly or through a derived value."""
    from nself_builtins.shared.envs import services_using

    return {
        name
        for name in config.names()
        if config.is_secret(name) and services_using(config, stack, [name])
    }


def findings(config: Config, stack: Stack, live: bool) -> list[Finding]:
    project = config.project_dir
    # Inside a build: a secrets file is refused when readable, .env.computed rewritten 0600.
    found = _files(project) if live else []
    own = secrets_file(config.env)
    if any(f.level == "error" and f.message.startswith(f"{own} ") for f in found):
        return found  # the values were not read
    _checked, items = value_findings(config)
    used = used_by(config, stack)
    items = [i for i in items if i["kind"] == "committed" or i["name"] in used]
    # Inside a build the kernel refuses missing, dev-stub and weak secrets with its own words.
    kinds = (
        {"weak", "dev-stub", "missing", "committed", "reused"} if live else {"committed", "reused"}
    )
    rotatable = {
        name for name, setting in config.declared.items() if setting.secret and setting.generate
    }
    flag = "" if config.is_local else f" --env {config.env}"
    to_rotate = sorted(
        {i["name"] for i in items if i["kind"] in ("weak", "dev-stub", "reused")} & rotatable
    )
    missing = sorted({i["name"] for i in items if i["kind"] == "missing"})
    for item in items:
        kind, name = item["kind"], item["name"]
        if kind not in kinds:
            continue
        level = "warning" if kind in ("reused", "committed") or config.is_local else "error"
        fix = None
        hint = f"nself secrets rotate {name}{flag}"
        if kind == "missing" or (kind == "dev-stub" and name in rotatable):
            hint = (
                f"nself secrets generate{flag} (before the first start), else nself secrets "
                f"rotate {name}{flag}"
            )
            fix = _first_values(config, sorted(set(missing) | set(to_rotate)))
        elif kind == "committed":
            hint = (
                f"move it to {own} and rotate it: the old value stays in the repository's history"
            )
        elif name in rotatable:
            fix = _rotate(config, to_rotate)
        else:
            hint = f"set a strong value for {name} in {own} (nself cannot generate it)"
        found.append(
            Finding(
                "secrets",
                level,  # type: ignore[arg-type]
                f"{kind}: {name} ({item['where']}): {item['message']}",
                hint,
                layer=LAYER,
                fix=fix,
            )
        )
    found += _ages(config, rotatable & used, flag)
    if not any(f.level != "ok" for f in found):
        found.append(
            Finding(
                "secrets",
                "ok",
                f"the {len(used)} secrets the stack uses are set, strong and unique",
                layer=LAYER,
            )
        )
    return found


def _files(project: Path) -> list[Finding]:
    found = []
    for item in readable_findings(project):
        rel = item["name"]
        found.append(
            Finding(
                "secret-files",
                "error",
                f"{rel} is {item['message'].split(';')[0]}",
                f"chmod 600 {rel}",
                layer=LAYER,
                fix=_chmod(project / rel),
            )
        )
    return found or [
        Finding(
            "secret-files",
            "ok",
            "files holding secrets are readable by their owner only",
            layer=LAYER,
        )
    ]


def _ages(config: Config, rotatable: set[str], flag: str) -> list[Finding]:
    limit = config.int(MAX_AGE, 365)
    if limit <= 0:
        return []
    dates = set_dates(config.project_dir, config.env)
    now = datetime.now(UTC)
    found = []
    for name in sorted(set(dates) & rotatable):
        if (config.get(name) or "") == "":
            continue
        try:
            days = (now - datetime.fromisoformat(dates[name])).days
        except ValueError:
            continue
        if days > limit:
            found.append(
                Finding(
                    "secret-age",
                    "warning",
                    f"{name} was set {days} days ago ({MAX_AGE}={limit})",
                    f"nself secrets rotate {name}{flag}",
                    layer=LAYER,
                    fix=_rotate_old(config, name, limit),
                )
            )
    return found


def _chmod(path: Path) -> Callable[[], str]:
    def fix() -> str:
        path.chmod(0o600)
        return f"chmod 600 {path.name}"

    return fix


def _first_values(config: Config, names: list[str]) -> Callable[[], str]:
    """Missing secrets and dev stubs: generated into .env.secrets while no stack holds the
    old values (outside dev, before the first start); else rotated in the stack."""

    def fix() -> str:
        from nself_builtins.shared.placement import runs_here

        from .commands import generate

        deployed = bool(config.text("DEPLOY_HOST").strip())
        if deployed or (runs_here(config) and _postgres_running(config)):
            return _rotate(config, names)()
        generate(config.env, as_json=False)
        return (
            f"generated the missing and dev-stub secrets for {config.env} into "
            f"{secrets_file(config.env)}"
        )

    return fix


def _postgres_running(config: Config) -> bool:
    """Whether this project's postgres runs on this machine's engine now."""
    from nself_sdk import NselfError, runtime

    try:
        return any(s.name == "postgres" and s.running for s in runtime(config).status())
    except NselfError:
        return False


def _rotate(config: Config, names: list[str]) -> Callable[[], str]:
    """Rotate every name still weak, a dev stub or reused, at once (each alone may not build
    while another is weak): the fixes of the other findings then find nothing left to do."""

    def fix() -> str:
        from nself_sdk import load_config

        from .commands import rotate

        _checked, items = value_findings(load_config(config.project_dir, config.env))
        bad = {i["name"] for i in items if i["kind"] in ("weak", "dev-stub", "reused")}
        still = [n for n in names if n in bad]
        if not still:
            return f"{', '.join(names)} already rotated"
        rotate(still, None if config.is_local else config.env, True, 180.0)
        return f"rotated {', '.join(still)} (new values in {secrets_file(config.env)})"

    return fix


def _rotate_old(config: Config, name: str, limit: int) -> Callable[[], str]:
    def fix() -> str:
        from .commands import rotate

        stamp = set_dates(config.project_dir, config.env).get(name, "")
        if stamp and (datetime.now(UTC) - datetime.fromisoformat(stamp)).days <= limit:
            return f"{name} already rotated"
        rotate([name], None if config.is_local else config.env, True, 180.0)
        return f"rotated {name} (new value in {secrets_file(config.env)})"

    return fix
