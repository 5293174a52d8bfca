"""Working with the current project from a plugin's command."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

from nself import build as _build
from nself.build import STATE_DIR
from nself.config import DEFAULT_LABEL
from nself.console import state
from nself.envfiles import UndefinedReference, secrets_file
from nself.errors import ConfigError, NselfError
from nself.model import GeneratedFile
from nself.plugins import Manager, make_manager, switches_set

from .config import Config
from .envfiles import COMPUTED, COMPUTED_HEADER, render_env, target_env
from .model import Stack
from .writer import BuildResult, Plan, write

if TYPE_CHECKING:
    from .containers import Runtime

_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


@contextmanager
def _resolving(project: Path, env: str) -> Iterator[None]:
    """A generated secret missing from every layer (deleted, or never generated) is named
    with the command that makes it."""
    try:
        yield
    except UndefinedReference as exc:
        setting = _build.declared_settings(make_manager(project)).get(exc.name)
        if setting is None or not setting.generate:
            raise
        flag = "" if env == "dev" else f" --env {env}"
        where = "its default value" if exc.entry.where == DEFAULT_LABEL else exc.entry.where
        raise ConfigError(
            f"{exc.name} is not set in any env file of {env}, "
            f"and {exc.entry.key} ({where}) refers to it",
            f"run `nself secrets generate{flag}`: it writes a strong {exc.name} into "
            f"{secrets_file(env)}",
        ) from exc


def plan(project_dir: Path, env: str | None = None) -> Plan:
    """Everything a build of ``env`` (default: the current target) writes, computed in
    memory and checked."""
    target = target_env(project_dir, env)
    with _resolving(project_dir, target):
        result = _build.plan(project_dir, target, Config, _refuse_undefined)
    config = result.config
    values = {name: config.get(name) or "" for name in config.names()}
    computed = render_env(values, COMPUTED_HEADER)
    result.files.append(GeneratedFile(COMPUTED, computed, 0o600))
    pm = config.pluginmanager or make_manager(project_dir)
    result.root = output_folder(pm, project_dir, target)
    return result


def _refuse_undefined(config: Config, files: list[GeneratedFile]) -> None:
    """A file whose ``${NAME}`` is resolved from .env.computed at run time names only
    settings that file holds (checked before the plugins' ``validate_files``)."""
    known = set(config.names())
    for item in files:
        text = item.content if item.env_refs and isinstance(item.content, str) else ""
        if missing := sorted(set(_REF.findall(text)) - known):
            hint = "set them in an env file"
            if switches := switches_set():  # the plugin deriving them may be left out
                hint += f", or leave in the plugin that derives them ({switches} is set)"
            raise NselfError(
                f"{item.path} refers to undefined setting(s): {', '.join(missing)}", hint
            )


def output_folder(pm: pluggy.PluginManager, project_dir: Path, env: str) -> Path:
    """The folder target ``env``'s generated files are written to (hook ``build_folder``):
    the project folder, or one inside its ``.nself/``."""
    folder = pm.hook.build_folder(project_dir=project_dir, env=env)
    if not folder:
        return project_dir
    rel = Path(folder)
    if rel.is_absolute() or ".." in rel.parts or len(rel.parts) < 2 or rel.parts[0] != STATE_DIR:
        raise NselfError(f"a plugin puts the build for {env} in {folder}, outside {STATE_DIR}/")
    return project_dir / rel


def build(project_dir: Path, env: str | None = None, check: bool = False) -> BuildResult:
    """Generate every file; with ``check`` only report what is invalid or out of date.
    Everything is computed and checked in memory first, so a failing build writes nothing."""
    return write(plan(project_dir, env), check)


def find_project() -> Path:
    """The project the command works on: the nearest folder holding ``.env.dev`` at or
    above ``--project`` (or the current folder)."""
    start = (state.project or Path.cwd()).resolve()
    if not start.is_dir():
        what = "is not a folder" if start.exists() else "does not exist"
        raise NselfError(f"{start} {what}", "check the folder given to -C/--project")
    for folder in (start, *start.parents):
        if (folder / ".env.dev").is_file():
            return folder
    raise NselfError(
        f"no nself project in {start} or its parents",
        "run `nself init` to create one, or cd into a project",
    )


def load_config(project: Path | None = None, env: str | None = None) -> Config:
    """The project's resolved settings: env layers, declared defaults and derived values."""
    project = project or find_project()
    target = target_env(project, env)
    with _resolving(project, target):
        return _build.load_config(project, target, Config)[0]


def stack(config: Config, pm: Manager | None = None) -> Stack:
    """What the plugins contribute for ``config``: services, routes and migrations, one
    owner per name (the build's stack, without its validation and files)."""
    return _build.collect_stack(pm or make_manager(config.project_dir), config)


def public_urls(config: Config, stack: Stack) -> dict[str, str]:
    """Where people open the stack: the plugins' ``contribute_urls`` (the first answer for a
    name wins), then the ``direct_url`` of a service opened without them (a dev tool)."""
    pm = config.pluginmanager or make_manager(config.project_dir)
    urls: dict[str, str] = {}
    for answer in pm.hook.contribute_urls(config=config, stack=stack):
        for name, url in answer.items():
            urls.setdefault(name, url)
    for service in stack.services:
        if service.direct_url and service.name not in urls:
            urls[service.name] = service.direct_url
    return urls


def runtime(config: Config, pm: pluggy.PluginManager | None = None) -> Runtime:
    """The container runtime a plugin provides for ``config`` (see ``provide_runtime``)."""
    manager = pm or make_manager(config.project_dir)
    found: Runtime | None = manager.hook.provide_runtime(config=config)
    if found is None:
        raise NselfError("no container runtime plugin is installed", "reinstall nself")
    return found


__all__ = [
    "BuildResult",
    "Plan",
    "Stack",
    "build",
    "find_project",
    "load_config",
    "plan",
    "public_urls",
    "runtime",
    "stack",
]
