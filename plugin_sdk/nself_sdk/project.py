"""Working with the current project from a plugin's command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

from nself import build as _build
from nself.build import BuildResult, Plan
from nself.config import Config
from nself.console import state
from nself.errors import NselfError
from nself.plugins import Manager, make_manager

from .model import Stack

if TYPE_CHECKING:
    from .containers import Runtime

plan = _build.plan
build = _build.build


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
    config, _pm = _build.load_config(project or find_project(), env)
    return config


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
