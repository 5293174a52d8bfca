"""The steps of ``nself install``, each one: what it would do (``--dry-run``), whether it is
done already, and doing it.

The project's own steps run nself's commands (``nself init``, ``secrets generate``,
``build``, ``harden``, ``start``, ``ssl renew``, ``db restore``) in a child process, exactly
as a person would type them; the system's steps (Debian packages, the firewall's boot-time
rules) run the system's tools. Nothing here deletes what it did not create.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nself_builtins.shared.placement import INSTALL_MARKER as MARKER
from nself_sdk import EXIT_FAILED, EXIT_OK, NselfError, UsageError
from nself_sdk.console import info, ok, paint, warn

ENVS = ("prod", "staging")
DEBIAN_LIKE = {"debian", "ubuntu"}
# Compose v2 from the distribution, best first (Ubuntu names it docker-compose-v2; Debian
# 13 ships v2 as docker-compose; Docker's own repository calls it docker-compose-plugin).
COMPOSE_PACKAGES = ("docker-compose-v2", "docker-compose-plugin", "docker-compose")
DOCKER_REPO = "https://download.docker.com/linux"
BACKUP_SCHEDULE = "0 2 * * *"
LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


@dataclass
class Options:
    domain: str
    name: str | None = None
    path: Path | None = None
    from_git: str | None = None
    restore: Path | None = None
    email: str | None = None
    env: str = "prod"
    dry_run: bool = False
    force: bool = False


@dataclass
class Outcome:
    changed: bool
    note: str
    warning: bool = False


@dataclass
class Context:
    options: Options
    name: str
    path: Path
    marker: dict[str, Any] = field(default_factory=dict)

    @property
    def env(self) -> str:
        return self.options.env

    def nself(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``nself -C PATH ARGS`` as a person would, in a child process."""
        argv = [sys.executable, "-m", "nself", "-C", str(self.path), *args]
        child_env = {k: v for k, v in os.environ.items() if k != "NSELF_ENV"}
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env, check=False)
        if check and done.returncode != 0:
            raise NselfError(
                f"`nself {' '.join(args)}` failed: {_last_error(done)}",
                _hint(done) or "run that command to see all it says",
            )
        return done

    def nself_json(self, *args: str, check: bool = True) -> Any:
        done = self.nself(*args, "--json", check=check)
        try:
            return json.loads(done.stdout) if done.stdout.strip() else None
        except ValueError:
            return None


def _last_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (
        errors[0] if errors else lines[-1] if lines else f"exit {done.returncode}"
    ).removeprefix("error: ")


def _hint(done: subprocess.CompletedProcess[str]) -> str | None:
    for line in (done.stderr + done.stdout).splitlines():
        if line.strip().startswith("hint:"):
            return line.strip().removeprefix("hint:").strip()
    return None


def run(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """A system tool; its exit code and output (127 when it is not installed)."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except FileNotFoundError:
        return 127, f"{argv[0]}: not installed"
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]}: timed out"
    return done.returncode, done.stdout + done.stderr


def must(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    code, out = run(argv, env)
    if code != 0:
        tail = " ".join(out.strip().splitlines()[-2:])
        raise NselfError(f"`{' '.join(argv)}` failed (exit {code}): {tail}")
    return out


class Step(Protocol):
    title: str

    def describe(self, ctx: Context) -> list[str]: ...

    def apply(self, ctx: Context) -> Outcome: ...


# -- the system -------------------------------------------------------------------------------
def os_release() -> dict[str, str]:
    values = {}
    try:
        text = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


class System:
    title = "the server"

    def describe(self, ctx: Context) -> list[str]:
        release = os_release().get("PRETTY_NAME", "an unknown system")
        who = "root" if os.geteuid() == 0 else "not root: the install itself needs root"
        return [f"check: Debian or Ubuntu ({release}), run as root ({who})"]

    def apply(self, ctx: Context) -> Outcome:
        release = os_release()
        family = {release.get("ID", "")} | set(release.get("ID_LIKE", "").split())
        if not family & DEBIAN_LIKE:
            raise NselfError(
                f"nself install prepares Debian and Ubuntu servers; this is "
                f"{release.get('PRETTY_NAME') or 'an unknown system'}",
                "install Docker Engine with Compose v2 yourself, then `nself init` and "
                "`nself start --env prod`",
            )
        return Outcome(False, f"{release.get('PRETTY_NAME', release.get('ID'))}, root")


def compose_version() -> str | None:
    for argv in (
        ["docker", "compose", "version", "--short"],
        ["docker-compose", "version", "--short"],
    ):
        code, out = run(argv)
        version = out.strip().lstrip("v")
        if code == 0 and version[:1].isdigit() and int(version.split(".")[0]) >= 2:
            return version
    return None


def engine_version() -> str | None:
    code, out = run(["docker", "version", "--format", "{{.Server.Version}}"])
    return out.strip() if code == 0 and out.strip() else None


def candidate(package: str) -> str | None:
    """The version apt would install, or None."""
    code, out = run(["apt-cache", "policy", package])
    match = re.search(r"^\s*Candidate:\s*(\S+)", out, re.MULTILINE)
    if code != 0 or match is None or match.group(1) == "(none)":
        return None
    return match.group(1)


def _major(version: str) -> int:
    version = version.split(":", 1)[-1]  # an epoch
    head = re.match(r"\d+", version)
    return int(head.group(0)) if head else 0


APT = {"DEBIAN_FRONTEND": "noninteractive"}


class Docker:
    title = "Docker Engine and Compose v2"

    def describe(self, ctx: Context) -> list[str]:
        engine, compose = engine_version(), compose_version()
        if engine and compose:
            return [f"already there: Docker {engine}, Compose {compose}"]
        return [
            "apt-get install docker.io (and docker-cli where separate) and Compose v2 "
            "(docker-compose-v2, docker-compose-plugin "
            "or docker-compose 2.x, whichever the distribution offers; else Docker's own "
            "repository)",
            "start the engine (systemctl enable --now docker)",
        ]

    def apply(self, ctx: Context) -> Outcome:
        engine, compose = engine_version(), compose_version()
        if engine and compose:
            return Outcome(False, f"Docker {engine}, Compose {compose}")
        packages = []
        if candidate("docker.io") is None:
            must(["apt-get", "update"], APT)  # the package lists are empty or stale
        if shutil.which("docker") is None:
            packages.append("docker.io")
            if candidate("docker-cli") is not None:  # Debian 13 ships the CLI on its own
                packages.append("docker-cli")
        if compose is None:
            packages.append(self._compose_package())
        if packages:
            must(["apt-get", "install", "-y", "--no-install-recommends", *packages], APT)
        if engine_version() is None:
            self._start_engine()
        engine, compose = engine_version(), compose_version()
        if not engine or not compose:
            raise NselfError(
                "Docker Engine or Compose v2 still does not answer after installing "
                + ", ".join(packages),
                "see `journalctl -u docker` and `docker compose version`",
            )
        return Outcome(
            True,
            f"installed {', '.join(packages) or 'nothing'}: Docker {engine}, Compose {compose}",
        )

    def _compose_package(self) -> str:
        for package in COMPOSE_PACKAGES:
            version = candidate(package)
            if version is not None and (package != "docker-compose" or _major(version) >= 2):
                return package
        self._docker_repository()
        return "docker-compose-plugin"

    def _docker_repository(self) -> None:
        """Docker's own apt repository, as Docker documents it for Debian and Ubuntu."""
        import httpx

        release = os_release()
        distro = "ubuntu" if release.get("ID") == "ubuntu" else "debian"
        codename = release.get("VERSION_CODENAME", "")
        if not codename:
            raise NselfError("/etc/os-release names no VERSION_CODENAME for Docker's repository")
        try:
            key = httpx.get(f"{DOCKER_REPO}/{distro}/gpg", timeout=30, follow_redirects=True)
            key.raise_for_status()
        except httpx.HTTPError as exc:
            raise NselfError(
                f"this distribution has no Compose v2 package, and Docker's repository cannot "
                f"be reached: {exc}",
                "install Docker Engine with Compose v2 yourself, then run nself install again",
            ) from exc
        from nself_sdk import write_atomic

        Path("/etc/apt/keyrings").mkdir(parents=True, exist_ok=True)
        write_atomic(Path("/etc/apt/keyrings/docker.asc"), key.content, 0o644)
        arch = must(["dpkg", "--print-architecture"]).strip()
        write_atomic(
            Path("/etc/apt/sources.list.d/docker.list"),
            f"deb [arch={arch} signed-by=/etc/apt/keyrings/docker.asc] {DOCKER_REPO}/{distro} "
            f"{codename} stable\n",
            0o644,
        )
        must(["apt-get", "update"], APT)

    def _start_engine(self) -> None:
        if Path("/run/systemd/system").is_dir():
            must(["systemctl", "enable", "--now", "docker"])
        else:
            run(["service", "docker", "start"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and engine_version() is None:
            time.sleep(1)


# -- the project --------------------------------------------------------------------------------
def read_marker(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_marker(ctx: Context) -> None:
    from nself_sdk import write_atomic

    (ctx.path / ".nself").mkdir(exist_ok=True)
    write_atomic(ctx.path / MARKER, json.dumps(ctx.marker, indent=2, sort_keys=True) + "\n", 0o600)


class Project:
    title = "the project"

    def describe(self, ctx: Context) -> list[str]:
        o = ctx.options
        refused = self.refusal(ctx)
        if refused is not None:
            return [f"refused: {refused.message}"]
        if (ctx.path / ".env.dev").is_file():
            if self.mine(ctx):
                return [f"{ctx.path}: the project nself install made for {o.domain}, kept"]
            return [f"{ctx.path}: an existing project, taken over (--force)"]
        if o.from_git:
            return [f"git clone {o.from_git} {ctx.path}"]
        return [f"nself init {ctx.path} --name {ctx.name} --domain {o.domain}"]

    def refusal(self, ctx: Context) -> NselfError | None:
        """Why the project step would stop, if it would."""
        o, path = ctx.options, ctx.path
        if (path / ".env.dev").is_file():
            if self.mine(ctx) or o.force:
                return None
            return NselfError(
                f"{path} already holds an nself project that nself install did not make "
                f"for {o.domain}",
                "pass --force to take it over (its env files and data are kept), or "
                "--path for another folder",
            )
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            return NselfError(
                f"{path} exists and is not an nself project; nothing there is touched",
                "choose another --path, or empty that folder yourself",
            )
        return None

    def mine(self, ctx: Context) -> bool:
        marker = read_marker(ctx.path)
        return marker.get("domain") == ctx.options.domain and marker.get("env") == ctx.env

    def apply(self, ctx: Context) -> Outcome:
        o = ctx.options
        path = ctx.path
        ctx.marker = read_marker(path)
        refused = self.refusal(ctx)
        if refused is not None:
            raise refused
        if (path / ".env.dev").is_file():
            if self.mine(ctx):
                return Outcome(False, f"{path} (made by nself install for {o.domain})")
            self._remember(ctx)
            return Outcome(True, f"took over {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if o.from_git:
            if o.from_git.startswith("-"):
                raise UsageError(f"--from-git {o.from_git!r} is not a repository URL")
            must(["git", "clone", "--quiet", "--", o.from_git, str(path)])
            if not (path / ".env.dev").is_file():
                raise NselfError(
                    f"{o.from_git} holds no nself project (.env.dev is missing); the clone "
                    f"is left in {path}",
                    "point --from-git at the repository of an nself project",
                )
            what = f"cloned {o.from_git}"
        else:
            argv = [sys.executable, "-m", "nself", "init", str(path), "--name", ctx.name]
            done = subprocess.run(
                [*argv, "--domain", o.domain], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                raise NselfError(f"`nself init` failed: {_last_error(done)}", _hint(done))
            what = f"created {path} ({ctx.name})"
        self._remember(ctx)
        return Outcome(True, what)

    def _remember(self, ctx: Context) -> None:
        ctx.marker = {"domain": ctx.options.domain, "env": ctx.options.env, "name": ctx.name}
        write_marker(ctx)


def env_file(ctx: Context) -> Path:
    return ctx.path / f".env.{ctx.env}"


def _file_values(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    if not path.is_file():
        return {}
    return {k: v or "" for k, v in dotenv_values(path, interpolate=False).items()}


class Settings:
    title = "production settings"

    def wanted(self, ctx: Context) -> dict[str, str]:
        values = {"BASE_DOMAIN": ctx.options.domain}
        current = _file_values(env_file(ctx))
        if "BACKUP_SCHEDULE" not in current:
            values["BACKUP_SCHEDULE"] = BACKUP_SCHEDULE
        if ctx.options.email:
            values["ACME_EMAIL"] = ctx.options.email
        return {k: v for k, v in values.items() if current.get(k) != v}

    def describe(self, ctx: Context) -> list[str]:
        values = (
            self.wanted(ctx)
            if env_file(ctx).is_file()
            else {"BASE_DOMAIN": ctx.options.domain, "BACKUP_SCHEDULE": BACKUP_SCHEDULE}
        )
        if not values:
            return [f".env.{ctx.env}: already set"]
        return [f".env.{ctx.env}: {k}={v}" for k, v in values.items()]

    def apply(self, ctx: Context) -> Outcome:
        values = self.wanted(ctx)
        if not values:
            return Outcome(False, f".env.{ctx.env} already sets the domain and backups")
        set_values(env_file(ctx), values)
        return Outcome(True, f".env.{ctx.env}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


def set_values(path: Path, values: dict[str, str]) -> None:
    """Replace each name's line in an env file (or append it), keeping every other line."""
    from nself_sdk import write_atomic

    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.is_file() else []
    pending = dict(values)
    for index, line in enumerate(lines):
        key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if key in pending and "=" in line and not line.lstrip().startswith("#"):
            lines[index] = f"{key}={_quote(pending.pop(key))}\n"
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines += [f"{k}={_quote(v)}\n" for k, v in pending.items()]
    write_atomic(path, "".join(lines), 0o644)


def _quote(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9_.@:/+-]*", value) else "'" + value + "'"


class Target:
    title = "the target environment"

    def describe(self, ctx: Context) -> list[str]:
        return [f"nself env switch {ctx.env} (later commands on this server default to it)"]

    def apply(self, ctx: Context) -> Outcome:
        marker = ctx.path / ".nself" / "env"
        current = marker.read_text(encoding="utf-8").strip() if marker.is_file() else ""
        if current == ctx.env:
            return Outcome(False, f"{ctx.env} already")
        ctx.nself("env", "switch", ctx.env)
        return Outcome(True, f"now {ctx.env}")


class Secrets:
    title = "production secrets"

    def describe(self, ctx: Context) -> list[str]:
        return [
            f"nself secrets generate --env {ctx.env} (strong values for missing or dev-stub "
            f"secrets into .env.secrets.{ctx.env}, 0600; existing ones kept)"
        ]

    def apply(self, ctx: Context) -> Outcome:
        data = ctx.nself_json("secrets", "generate", "--env", ctx.env) or {}
        made = data.get("generated") or []
        if not made:
            return Outcome(False, "every secret is set")
        return Outcome(True, f"generated {len(made)}: {', '.join(made)}")


def _ports(ctx: Context) -> list[int]:
    from nself_sdk import load_config

    config = load_config(ctx.path, ctx.env)
    return sorted({config.int("NGINX_HTTP_PORT", 80), config.int("NGINX_HTTPS_PORT", 443)})


class Firewall:
    title = "the firewall (DOCKER-USER)"

    def describe(self, ctx: Context) -> list[str]:
        from nself_builtins.shared.firewall import SCRIPT_PATH, UNIT_NAME

        ports = "nginx's ports"
        if (ctx.path / ".env.dev").is_file():
            ports = ", ".join(map(str, _ports(ctx)))
        return [
            f"write {SCRIPT_PATH} and {UNIT_NAME} (runs after docker.service at every boot)",
            f"DOCKER-USER: new connections from outside reach containers on {ports} only",
        ]

    def apply(self, ctx: Context) -> Outcome:
        from nself_builtins.shared.firewall import (
            SCRIPT_PATH,
            UNIT_NAME,
            UNIT_PATH,
            local_run,
            read_chain,
            script,
            unit,
        )
        from nself_sdk import write_atomic

        ports = _ports(ctx)
        files = {Path(SCRIPT_PATH): (script(ports), 0o755), Path(UNIT_PATH): (unit(), 0o644)}
        changed = []
        for path, (text, mode) in files.items():
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, text, mode)
                changed.append(str(path))
        if shutil.which("systemctl") is not None:
            _code, out = run(["systemctl", "is-enabled", UNIT_NAME])
            if out.strip() != "enabled" or changed:
                run(["systemctl", "daemon-reload"])  # fails harmlessly when systemd is not running
                must(["systemctl", "enable", UNIT_NAME])
                if out.strip() != "enabled":
                    changed.append(f"enabled {UNIT_NAME}")
        chain = read_chain(local_run)
        if chain.error:
            raise NselfError(f"cannot read the firewall: {chain.error}", "is iptables installed?")
        if not chain.ours or chain.allowed_ports() != set(ports):
            must(["sh", SCRIPT_PATH])
            after = read_chain(local_run)
            if after.allowed_ports() != set(ports):
                raise NselfError(f"{SCRIPT_PATH} ran, but DOCKER-USER does not show nself's rules")
            changed.append(f"DOCKER-USER lets only {', '.join(map(str, ports))} in")
        if not changed:
            return Outcome(
                False, f"DOCKER-USER lets only {', '.join(map(str, ports))} in, at every boot"
            )
        return Outcome(True, "; ".join(changed))


class Build:
    title = "the stack's files"

    def describe(self, ctx: Context) -> list[str]:
        return [f"nself build --env {ctx.env} (its hardening checks refuse on an error)"]

    def apply(self, ctx: Context) -> Outcome:
        data = ctx.nself_json("build", "--env", ctx.env, check=False) or {}
        if not data.get("ok", False):
            problems = data.get("problems") or [{"message": data.get("error", "the build failed")}]
            raise NselfError(
                f"nself build --env {ctx.env} refused: "
                + "; ".join(str(p.get("message")) for p in problems[:5]),
                data.get("hint") or "fix that, then run nself install again",
            )
        changes = data.get("changes") or {}
        for warning in data.get("warnings") or ():
            warn(f"build: {warning}")
        if not changes:
            return Outcome(False, "up to date")
        return Outcome(True, f"{len(changes)} file(s) written")


class Harden:
    title = "the hardening suite"

    def describe(self, ctx: Context) -> list[str]:
        return [f"nself harden --env {ctx.env}: errors stop the install before the stack starts"]

    def apply(self, ctx: Context) -> Outcome:
        data = ctx.nself_json("harden", "--env", ctx.env, check=False) or {}
        items = [i for layer in (data.get("layers") or {}).values() for i in layer]
        errors = [i for i in items if i.get("level") == "error"]
        warnings = [i for i in items if i.get("level") == "warning"]
        for item in warnings:
            warn(f"harden: {item['layer']}/{item['check']}: {item['message']}", item.get("hint"))
        if errors:
            for item in errors:
                info(f"  {paint('✗', 'red')} {item['layer']}/{item['check']}: {item['message']}")
            raise NselfError(
                f"the hardening suite found {len(errors)} error(s); the stack was not started",
                f"fix them (`nself harden --env {ctx.env}` shows hints; --fix applies the safe "
                "ones), then run nself install again",
            )
        return Outcome(False, f"{len(items) - len(warnings)} checks pass, {len(warnings)} warnings")


class Start:
    title = "the stack"

    def describe(self, ctx: Context) -> list[str]:
        return [f"nself start --env {ctx.env} --all (the enabled optional services too: the "
                "backup scheduler)"]  # fmt: skip

    def apply(self, ctx: Context) -> Outcome:
        states = ctx.nself_json("status", "--env", ctx.env, check=False) or []
        if states and all(s.get("state") == "running" for s in states):
            unhealthy = [
                s["service"] for s in states if s.get("health") not in (None, "none", "healthy")
            ]
            if not unhealthy:
                return Outcome(False, f"{len(states)} services running and healthy")
        ctx.nself("start", "--env", ctx.env, "--all")
        return Outcome(True, "started")


class Certificates:
    title = "certificates"

    def describe(self, ctx: Context) -> list[str]:
        return [
            f"nself ssl renew --env {ctx.env} (ACME, HTTP-01 through the running nginx: "
            "after the start)"
        ]

    def apply(self, ctx: Context) -> Outcome:
        from nself_builtins.shared.tls import ssl_mode
        from nself_sdk import load_config

        mode = ssl_mode(load_config(ctx.path, ctx.env))
        if mode == "file":
            return Outcome(False, "the project's own certificate (SSL_CERTIFICATE_FILE)")
        if mode == "local":
            return Outcome(
                False,
                f"SSL_MODE=local: {ctx.env} serves nself's self-signed certificate",
                warning=True,
            )
        done = ctx.nself("ssl", "renew", "--env", ctx.env, "--json", check=False)
        try:
            data = json.loads(done.stdout) if done.stdout.strip() else {}
        except ValueError:
            data = {}
        if done.returncode != 0:
            return Outcome(
                False,
                f"not obtained: {_last_error(done)} (the stack runs; `nself ssl renew` once DNS "
                f"points at this server)",
                warning=True,
            )
        renewed = [r for r in data.get("results") or () if r.get("action") == "renewed"]
        if not renewed:
            return Outcome(False, "every certificate is current")
        return Outcome(True, "obtained for " + ", ".join(", ".join(r["names"]) for r in renewed))


def _sha256(path: Path) -> str:
    import hashlib

    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class Restore:
    title = "the data"

    def describe(self, ctx: Context) -> list[str]:
        return [f"nself db restore {ctx.options.restore} --env {ctx.env} --confirm (once)"]

    def apply(self, ctx: Context) -> Outcome:
        source = ctx.options.restore
        assert source is not None
        digest = _sha256(source)
        if ctx.marker.get("restored") == digest:
            return Outcome(False, f"{source.name} was restored by an earlier run")
        backups = ctx.path / "backups"
        backups.mkdir(mode=0o700, exist_ok=True)
        for suffix in ("", ".json", ".globals.sql"):
            companion = Path(f"{source}{suffix}")
            if companion.is_file():
                shutil.copy2(companion, backups / companion.name)
        ctx.nself("db", "restore", source.name, "--env", ctx.env, "--confirm")
        ctx.marker["restored"] = digest
        write_marker(ctx)
        return Outcome(True, f"restored {source.name}")


# -- the whole --------------------------------------------------------------------------------
def _context(o: Options) -> Context:
    from nself_sdk.checks import is_domain

    domain = o.domain.strip().lower()
    if not is_domain(domain) or "." not in domain:
        raise UsageError(f"--domain {o.domain!r} is not a domain name", "e.g. --domain example.com")
    o.domain = domain
    if o.env not in ENVS:
        raise UsageError(f"--env {o.env!r}: nself install prepares prod or staging", "--env prod")
    name = o.name or domain.split(".")[0]
    if not LABEL.match(name):
        raise UsageError(f"--name {name!r} is not a project name", "lowercase letters, digits, -")
    if o.email is not None and not EMAIL.match(o.email):
        raise UsageError(f"--email {o.email!r} is not a mail address", "e.g. ops@example.com")
    if o.restore is not None:
        if not o.restore.is_file():
            raise UsageError(f"--restore {o.restore}: no such file")
        o.restore = o.restore.resolve()
    path = (o.path or Path("/opt/nself") / name).expanduser().absolute()
    return Context(o, name, path)


def steps(o: Options) -> list[Step]:
    found: list[Step] = [System(), Docker(), Project(), Settings(), Target(), Secrets()]
    found += [Firewall(), Build(), Harden(), Start(), Certificates()]
    if o.restore is not None:
        found.append(Restore())
    return found


def run_install(o: Options) -> int:
    ctx = _context(o)
    plan = steps(o)
    if o.dry_run:
        info(f"nself install --domain {o.domain}: {len(plan)} steps (dry run: nothing changes)")
        for number, step in enumerate(plan, 1):
            info(f"{number:>2}. {step.title}")
            for line in step.describe(ctx):
                info(f"      {line}")
        refused = Project().refusal(ctx)
        if refused is not None:
            raise refused
        return EXIT_OK
    if os.geteuid() != 0:
        raise NselfError(
            "nself install changes the system (packages, firewall, services): run it as root",
            f"sudo nself install --domain {o.domain}, or --dry-run to see every step",
        )
    changed = 0
    for number, step in enumerate(plan, 1):
        try:
            outcome = step.apply(ctx)
        except NselfError as exc:
            raise NselfError(
                f"step {number} ({step.title}): {exc.message}",
                (exc.hint + "; " if exc.hint else "") + "the steps before it are kept: run "
                "nself install again once it is fixed",
            ) from exc
        changed += outcome.changed
        line = f"{number:>2}. {step.title}: {outcome.note}"
        if outcome.warning:
            warn(line)
        elif outcome.changed:
            ok(line)
        else:
            info(f"{paint('·', 'dim')} {line}")
    summary = ctx.nself_json("harden", "--env", o.env, check=False) or {}
    counts = summary.get("counts") or {}
    info(
        f"hardening: {counts.get('ok', 0)} ok, {counts.get('warning', 0)} warnings, "
        f"{counts.get('error', 0)} errors (nself harden --env {o.env})"
    )
    ok(
        f"{ctx.path} serves {o.domain} ({o.env}); "
        + (f"{changed} step(s) changed" if changed else "nothing changed: already installed")
    )
    return EXIT_FAILED if counts.get("error") else EXIT_OK
