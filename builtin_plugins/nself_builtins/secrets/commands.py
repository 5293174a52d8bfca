"""The work behind ``nself secrets``: names are shown, values never."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nself_builtins.shared.envs import in_dependency_order, references, service_references
from nself_builtins.shared.generations import kept_files
from nself_builtins.shared.secrets import generate as generate_secret
from nself_builtins.shared.secrets import ignore_said, split_said
from nself_sdk import (
    EXIT_FAILED,
    Config,
    NselfError,
    Setting,
    UsageError,
    find_project,
    load_config,
    plan,
    runtime,
)
from nself_sdk import build as run_build
from nself_sdk.console import emit_json, info, ok, warn
from nself_sdk.envfiles import (
    COMPUTED,
    SECRETS,
    SECRETS_FILES,
    Entry,
    parse_text,
    quote,
    read_layers,
    secrets_file,
    target_env,
    write_atomic,
)
from nself_sdk.host import plugin_manager
from nself_sdk.model import plugin_setting

from .policy import weakness

__all__ = [
    "SECRETS",
    "readable_findings",
    "rotate",
    "set_dates",
    "value_findings",
    "write_secrets",
]

DEV_FILE = ".env.dev"
GENERATE_HINT = "not set; run `nself secrets generate`"
COMMITTED = (".env.dev", ".env.staging", ".env.prod")
HEADER = "# Real secrets (gitignored, mode 0600). Managed by `nself secrets`; values never print.\n"


# -- writing .env.secrets -----------------------------------------------------------------
@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def write_secrets(project: Path, env: str, values: dict[str, str], note: str) -> None:
    """Set ``values`` in ``env``'s secrets file (``.env.secrets`` for local,
    ``.env.secrets.<env>`` otherwise): replace their lines or append, mode 0600. No other
    target's file is touched.

    A new file is created with O_EXCL under umask 077, so it is never readable by
    anyone else, not even for a moment; an existing one is replaced atomically. When each
    value was set is kept in ``.nself/secrets.json`` (names and times, never values).
    """
    if env != "dev":
        ignore_said(project)  # before the file exists: never a moment git would take it
    _write_values(project, secrets_file(env), values, note)
    record_dates(project, env, list(values))


def _write_values(project: Path, name: str, values: dict[str, str], note: str) -> None:
    from dotenv.parser import parse_stream

    path = project / name
    pending = dict(values)
    if not path.exists() and not path.is_symlink():
        text = HEADER + f"# {note}\n" + "".join(f"{k}={quote(v)}\n" for k, v in pending.items())
        with _umask(0o077):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        return
    if path.is_symlink() or not path.is_file():
        raise NselfError(f"{name} is not a regular file", "replace it with a plain file")
    old = path.read_text(encoding="utf-8")
    chunks: list[str] = []
    for binding in parse_stream(io.StringIO(old)):
        chunk = binding.original.string
        if binding.key in values and not binding.error:  # every line of it: the last wins
            lead = chunk[: len(chunk) - len(chunk.lstrip("\n"))]
            end = "\n" if chunk.endswith("\n") else ""
            chunk = f"{lead}{binding.key}={quote(values[binding.key])}{end}"
            pending.pop(binding.key, None)
        chunks.append(chunk)
    text = "".join(chunks)
    if pending:
        if text and not text.endswith("\n"):
            text += "\n"
        text += f"# {note}\n" + "".join(f"{k}={quote(v)}\n" for k, v in pending.items())
    write_atomic(path, text, 0o600)


DATES = ".nself/secrets.json"


def _date_key(env: str, name: str) -> str:
    """Local's secrets by name, another target's as ``ENV/NAME`` (each file has its own)."""
    return name if env == "dev" else f"{env}/{name}"


def _all_dates(project: Path) -> dict[str, str]:
    import json

    try:
        data = json.loads((project / DATES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


def set_dates(project: Path, env: str = "dev") -> dict[str, str]:
    """When nself last set each secret in ``env``'s secrets file (ISO 8601, UTC), by name."""
    prefix = "" if env == "dev" else f"{env}/"
    return {
        key[len(prefix) :]: value
        for key, value in _all_dates(project).items()
        if key.startswith(prefix) and "/" not in key[len(prefix) :]
    }


def record_dates(project: Path, env: str, names: list[str]) -> None:
    import json
    from datetime import UTC, datetime

    dates = _all_dates(project)
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    dates.update({_date_key(env, name): now for name in names})
    (project / ".nself").mkdir(exist_ok=True)
    write_atomic(project / DATES, json.dumps(dates, indent=2, sort_keys=True) + "\n", 0o600)


# -- generate -----------------------------------------------------------------------------
def _layers(project: Path, env: str) -> dict[str, Entry]:
    """The winning entry of every name in ``env``'s layers, read without resolving.

    Reading the files directly (not the resolved config) lets ``generate`` repair a
    project whose config cannot resolve yet because a secret is missing.
    """
    if env != "dev":
        split_said(project)
    return {entry.key: entry for entry in read_layers(project, env)}


def _needs_value(env: str, setting: Setting, winners: dict[str, Entry]) -> str | None:
    """Why ``setting`` needs a generated value for ``env``, or None."""
    entry = winners.get(setting.name)
    if entry is None or not entry.raw:
        return "missing"
    if env != "dev" and entry.file == DEV_FILE:
        return f"dev stub from {entry.where}"
    return None


def generate(env: str | None, as_json: bool) -> None:
    project = find_project()
    target = target_env(project, env)
    winners = _layers(project, target)
    declared = [s for answer in plugin_manager(project).hook.declare_settings() for s in answer]
    wanted = {
        s.name: (s, why)
        for s in sorted(declared, key=lambda s: s.name)
        if s.generate and (why := _needs_value(target, s, winners))
    }
    new = {name: generate_secret(s.generate) for name, (s, _why) in wanted.items()}
    file = secrets_file(target)
    if new:
        write_secrets(project, target, new, f"generated by `nself secrets generate` for {target}")
    if as_json:
        emit_json({"env": target, "file": file, "generated": sorted(new)})
        return
    if not new:
        ok(f"every secret is already set for {target} ({file}); nothing to generate")
        return
    ok(f"generated {len(new)} secret(s) for {target} into {file} (mode 0600):")
    for name, (_s, why) in wanted.items():
        info(f"  {name:<32} was {why}")
    info("next: nself build")


# -- audit --------------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _readable_files(project: Path) -> list[Path]:
    from nself_builtins.shared.placement import TARGETS_DIR

    candidates = [project / name for name in SECRETS_FILES]
    # each build's .env.computed (the project's, the servers' in .nself/targets/ENV) and
    # the kept builds' copies
    for root in [project, *sorted((project / TARGETS_DIR).glob("*"))]:
        candidates += [root / COMPUTED, *kept_files(root, COMPUTED)]
    return [p for p in candidates if p.is_file()]


def _plain(config: Config, name: str) -> bool:
    """A value someone chose or generated (not derived from other settings)."""
    origins = config.origins(name)
    if not origins or origins[-1].file == COMPUTED:
        return False
    winner = origins[-1]
    return winner.literal or not references(winner.raw)


def _boring(value: str) -> bool:
    low = value.strip().lower()
    return low.isdigit() or low in {"true", "false", "yes", "no", "on", "off", ""}


def audit(env: str | None, as_json: bool) -> None:
    project = find_project()
    target, checked, findings, secrets_file_ok = audit_findings(project, env)
    result = {"env": target, "checked": checked, "findings": findings}
    if as_json:
        emit_json(result)
    elif not findings:
        ok(f"{checked} secret(s) checked for {target}: no findings")
    else:
        for f in findings:
            where = "" if f["where"] == f["name"] else f" ({f['where']})"
            warn(f"{f['kind']}: {f['name']}{where}: {f['message']}")
        if not secrets_file_ok:
            file = secrets_file(target or "dev")  # resolved by audit_findings
            info(f"fix the mode of {file} first; the values were not checked")
    if findings:
        raise SystemExit(EXIT_FAILED)


def audit_findings(
    project: Path, target: str | None
) -> tuple[str | None, int, list[dict[str, str]], bool]:
    """``(env, secrets checked, findings, whether the target's secrets file could be read
    safely)``."""
    findings = readable_findings(project) + tracked_findings(project)
    target = target_env(project, target)
    own = secrets_file(target)
    secrets_file_ok = not any(f["kind"] == "readable" and f["name"] == own for f in findings)
    checked = 0
    if secrets_file_ok:
        config = load_config(project, target)
        target = config.env
        checked, more = value_findings(config)
        findings += more
    return target, checked, findings, secrets_file_ok


def _finding(kind: str, name: str, where: str, message: str) -> dict[str, str]:
    return {"kind": kind, "name": name, "where": where, "message": message}


def readable_findings(project: Path) -> list[dict[str, str]]:
    """Files holding secrets that others than their owner may read."""
    findings = []
    for path in _readable_files(project):
        mode = _mode(path)
        rel = path.relative_to(project).as_posix()
        holds_secrets = path.name in (*SECRETS_FILES, COMPUTED)
        if mode & 0o077 and (holds_secrets or mode & 0o004):
            who = "everyone" if mode & 0o004 else "the group"
            findings.append(
                _finding(
                    "readable",
                    rel,
                    rel,
                    f"readable by {who} (mode {mode:04o}); run: chmod 600 {rel}",
                )
            )
    return findings


def tracked_findings(project: Path) -> list[dict[str, str]]:
    """Files holding secrets that git tracks (added before .gitignore listed them, or by
    force): every clone and every push carries them."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        return []
    try:
        done = subprocess.run(
            ["git", "-C", str(project), "ls-files", "-z", "--", *SECRETS_FILES, COMPUTED],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:  # not in a git repository
        return []
    findings = []
    for raw in done.stdout.split(b"\0"):
        if raw:
            rel = raw.decode("utf-8", "replace")
            findings.append(
                _finding(
                    "tracked",
                    rel,
                    rel,
                    "tracked by git: every clone and push carries its secrets; run: "
                    f"git rm --cached {rel}, commit, and rotate what it holds",
                )
            )
    return findings


def _other_targets(config: Config) -> dict[str, dict[str, str]]:
    """Outside local, the values in the other servers' secrets files (a project split from
    one shared file starts with the same values in both)."""
    if config.is_local:
        return {}
    found = {}
    for env in ("staging", "prod"):
        path = config.project_dir / secrets_file(env)
        if env == config.env or not path.is_file() or path.is_symlink():
            continue
        try:
            entries = parse_text(path.read_text(encoding="utf-8"), path.name)
        except (NselfError, OSError, UnicodeDecodeError):
            continue  # its own audit says what is wrong with it
        found[env] = {e.key: e.raw for e in entries if e.literal or "${" not in e.raw}
    return found


def value_findings(config: Config) -> tuple[int, list[dict[str, str]]]:
    """``(secrets checked, findings)``: weak, dev-stub, committed, reused, missing and
    (outside local) shared secrets of ``config``."""
    findings: list[dict[str, str]] = []
    elsewhere = _other_targets(config)

    def add(kind: str, name: str, where: str, message: str) -> None:
        findings.append(_finding(kind, name, where, message))

    checked = 0
    seen: dict[str, list[str]] = {}
    for name in config.names():
        declared = config.declared.get(name)
        if not config.is_secret(name) or not _plain(config, name):
            if declared and declared.secret and declared.generate and not config.get(name):
                add("missing", name, config.where(name), "not set; run `nself secrets generate`")
            continue
        value = config.get(name) or ""
        if not value:
            if declared and declared.secret and declared.generate:
                add("missing", name, config.where(name), "not set; run `nself secrets generate`")
            continue
        if (declared is None and _boring(value)) or (declared is not None and not declared.secret):
            continue  # a plugin's own setting it says is no secret (AUTH_PASSWORD_MIN_LENGTH)
        checked += 1
        where = config.where(name)
        winner = config.origins(name)[-1]
        why = weakness(value, plugin_setting(declared).min_length if declared else 0)
        if why:
            add("weak", name, where, why)
        if not config.is_local:
            dev = [e for e in config.origins(name) if e.file == DEV_FILE]
            if winner.file in (DEV_FILE, "(default)"):
                add("dev-stub", name, where, f"uses the dev value outside local ({config.env})")
            elif (
                dev and (dev[-1].literal or not references(dev[-1].raw)) and (dev[-1].raw == value)
            ):
                add("dev-stub", name, where, f"same value as {dev[-1].where} (committed)")
            elif winner.file in COMMITTED:
                add("committed", name, where, f"a real secret in committed {winner.file}")
            same = [env for env, values in elsewhere.items() if values.get(name) == value]
            if same and winner.file == secrets_file(config.env):
                add(
                    "shared",
                    name,
                    where,
                    f"the same value as {' and '.join(same)}'s: rotate it for "
                    f"{config.env} (`nself secrets rotate {name} --env {config.env}`)",
                )
        seen.setdefault(value, []).append(name)
    for names in seen.values():
        if len(names) > 1:
            for name in names:
                others = ", ".join(n for n in names if n != name)
                add("reused", name, config.where(name), f"same value as {others}")
    return checked, findings


# -- rotate -------------------------------------------------------------------------------
def _rotatable(config: Config, name: str) -> Setting:
    declared = config.declared.get(name)
    if declared is None or not declared.secret:
        close = [n for n, s in config.declared.items() if s.secret and s.generate]
        raise UsageError(
            f"{name} is not a secret nself manages",
            f"secrets it can rotate: {', '.join(sorted(close))}",
        )
    if not declared.generate:
        origin = config.origins(name)[-1] if config.origins(name) else None
        refs = sorted(references(origin.raw)) if origin and not origin.literal else []
        if refs:
            raise UsageError(f"{name} is built from {', '.join(refs)}", f"rotate {refs[0]} instead")
        raise UsageError(
            f"{name} is issued by another system, so nself cannot generate it",
            f"put the new value in {secrets_file(config.env)}, then run `nself build` "
            "and `nself start`",
        )
    return plugin_setting(declared)


def _confirm(config: Config, setting: Setting, yes: bool, users: list[str]) -> None:
    notes = []
    if setting.rotation:
        notes.append(setting.rotation)
    if users:
        notes.append(f"These services restart: {', '.join(users)} (brief interruption).")
    if not config.is_local:
        notes.append(f"This changes the {config.env} environment.")
    if not setting.rotation and config.is_local:
        return  # nothing users would notice
    for note in notes:
        warn(note)
    from nself_sdk import require_yes

    require_yes(
        f"rotate {setting.name} now?",
        yes,
        needs=f"rotating {setting.name} needs confirmation",
        hint="read the above, then rerun with --yes",
    )


def _running(rt: Any) -> set[str]:
    if rt is None:
        return set()
    try:
        return {s.name for s in rt.status() if s.running}
    except NselfError:
        return set()


def rotate(names: str | list[str], env: str | None, yes: bool, timeout: float) -> None:
    """Give each of ``names`` a new value, set it inside the stack, rebuild and restart the
    services that use them. Several at once works even when each of them alone would not
    build (two weak secrets: the build refuses the other one)."""
    wanted = _wanted(names)
    project = find_project()
    config = load_config(project, env)
    settings = [_rotatable(config, name) for name in wanted]
    probable = _probable_users(project, config, wanted)
    for setting in settings:
        _confirm(config, setting, yes, probable)
    shown, file = ", ".join(wanted), secrets_file(config.env)
    rt, running = _stack_runtime(config)
    after = _set_values(project, config, settings, wanted, rt)
    users = _users_of_change(config, after)
    try:
        result = run_build(project, config.env)
    except NselfError as exc:  # the new values are in place (and in the database): say so
        raise NselfError(
            f"{shown} rotated (new values in {file}) but the rebuild failed: {exc.message}",
            "fix that, then run `nself build` and `nself restart`",
        ) from exc
    ok(f"rotated {shown} in {file}; rebuilt ({len(result.changes)} file(s) changed)")
    _warn_stale(config, wanted, file)
    from nself_builtins.shared.placement import runs_here

    if not runs_here(config):
        if users:
            warn(
                f"the {config.env} services using it ({', '.join(users)}) keep the old value "
                "until the next release",
                f"deploy it now: nself deploy {config.env}",
            )
        return
    _restart_users(after.config, users, running, shown, timeout, file)


def _wanted(names: str | list[str]) -> list[str]:
    wanted = [names] if isinstance(names, str) else list(names)
    wanted = list(dict.fromkeys(n.strip().upper() for n in wanted if n.strip()))
    if not wanted:
        raise UsageError("name a secret to rotate", "e.g. nself secrets rotate HASURA_JWT_KEY")
    return wanted


def _probable_users(project: Path, config: Config, wanted: list[str]) -> list[str]:
    """The services the current build says use these secrets, in dependency order (what the
    confirmation names); none when the build refuses (e.g. because of these very secrets)."""
    try:
        before_stack: Any = plan(project, config.env).stack
    except NselfError:
        return []
    derived = _derived(config, *wanted)
    probable = [s.name for s in before_stack.services if service_references(s) & derived]
    return in_dependency_order(before_stack, probable) if probable else []


def _stack_runtime(config: Config) -> tuple[Any, set[str]]:
    """The runtime of the environment's stack (None when there is none) and what runs."""
    # Outside local, the stack is the one on the environment's server (DEPLOY_HOST); never
    # this machine's containers, which run the local stack under the same project name.
    from nself_builtins.shared.placement import runs_here

    rt: Any = None
    deployed = runs_here(config) or bool(config.text("DEPLOY_HOST").strip())
    try:
        rt = runtime(config) if deployed else None
    except NselfError as exc:
        warn(f"no container runtime: {exc.message}")
    return rt, _running(rt) if runs_here(config) else set()


def _set_values(
    project: Path, config: Config, settings: list[Setting], wanted: list[str], rt: Any
) -> Any:
    """Write fresh values to the secrets file and have each secret's owner set it inside
    the stack (hook ``rotate_secret``); on any failure put the file and the dates back, but
    keep the values the stack already took. Returns the plan with the new values."""
    file = secrets_file(config.env)
    secrets_path = project / file
    saved = secrets_path.read_bytes() if secrets_path.is_file() else None
    saved_dates = _all_dates(project)
    values = {s.name: generate_secret(s.generate) for s in settings}
    write_secrets(
        project, config.env, values, f"rotated by `nself secrets rotate {' '.join(wanted)}`"
    )

    def restore(keep: dict[str, str]) -> None:
        """Put the file back as it was, except for the values the stack already has."""
        if saved is None:
            secrets_path.unlink(missing_ok=True)
        else:
            write_atomic(secrets_path, saved, 0o600)
        dates = project / DATES
        if dates.parent.is_dir():
            import json

            write_atomic(dates, json.dumps(saved_dates, indent=2, sort_keys=True) + "\n", 0o600)
        if keep:
            write_secrets(
                project, config.env, keep, "rotated in the stack before a later secret failed"
            )

    applied: dict[str, str] = {}
    try:
        after = plan(project, config.env)
        pm = plugin_manager(project)
        for name, value in values.items():
            pm.hook.rotate_secret(config=after.config, name=name, value=value, runtime=rt)
            applied[name] = value
    except BaseException:
        restore(applied)
        raise
    return after


def _users_of_change(config: Config, after: Any) -> list[str]:
    """The services whose definitions read a value the rotation changed, in order."""
    changed = {
        n
        for n in set(config.names()) | set(after.config.names())
        if config.get(n) != after.config.get(n)
    }
    return in_dependency_order(
        after.stack, [s.name for s in after.stack.services if service_references(s) & changed]
    )


def _warn_stale(config: Config, wanted: list[str], file: str) -> None:
    stale = [
        e.where
        for name in wanted
        for e in config.origins(name)
        if e.file not in (file, DEV_FILE, COMPUTED)
    ]
    if stale:
        warn(
            f"the old value is still written in {', '.join(stale)} (now overridden)",
            "delete it there: old secrets should not linger in files",
        )


def _restart_users(
    config: Config, users: list[str], running: set[str], shown: str, timeout: float, file: str
) -> None:
    """Restart the running users of the new value (``config``: the rebuilt stack's)."""
    live = [u for u in users if u in running]
    idle = [u for u in users if u not in running]
    if idle:
        info(f"  not running, will use the new value when started: {', '.join(idle)}")
    if not live:
        if not users:
            info("  no service of the stack uses it")
        return
    rt = runtime(config)  # the rebuilt stack
    for service in live:
        info(f"  restarting {service} ...")
        _restart(rt, service, shown, timeout, file)
        ok(f"{service} healthy")
    ok(f"{len(live)} service(s) restarted and healthy with the new {shown}")


def _container(rt: Any, service: str) -> str:
    state = next((s for s in rt.status() if s.name == service), None)
    return str(state.container) if state is not None else ""


def _restart(rt: Any, service: str, secret: str, timeout: float, file: str) -> None:
    """Recreate ``service`` with the new value and wait until it is healthy.

    ``up`` recreates the container whose definition changed and judges only the new one
    (never the old container, healthy until Compose replaces it). When Compose keeps the
    container (the value reaches the service some other way than its definition), it is
    restarted, and ``up`` waits for it again.
    """
    old = _container(rt, service)
    hint = f"the new value is in {file}; see `nself logs {service}`"

    def up() -> None:
        outcome = rt.up([service], wait=True, timeout=timeout, isolate=lambda _name: False)
        failed = getattr(outcome, "failed", {})
        if failed:
            reason = "; ".join(f"{k}: {v}" for k, v in failed.items())
            raise NselfError(f"{service} did not come back after rotating {secret}: {reason}", hint)

    up()
    if old and _container(rt, service) == old:
        rt.restart([service])  # same definition: Compose kept the container
        up()


def _derived(config: Config, *names: str) -> set[str]:
    from nself_builtins.shared.envs import derived_from

    return derived_from(config, set(names))
