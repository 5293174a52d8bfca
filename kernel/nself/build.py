"""The ``nself build`` pipeline: settings -> checks -> contributions -> files on disk."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic

from . import envfiles
from .config import DEFAULT_LABEL, C, Config, load
from .envfiles import Entry
from .errors import NselfError
from .model import GeneratedFile, Problem, Setting, Shown, Stack
from .plugins import Manager, make_manager

STATE_DIR = ".nself"


@dataclass(repr=False)
class Plan(Shown, Generic[C]):
    """What a build would write, before anything touches the disk."""

    config: C
    stack: Stack[Any, Any, Any]
    files: list[GeneratedFile]
    warnings: list[Problem] = field(default_factory=list)
    root: Path = Path()  # where the files go (the SDK asks the hook build_folder)


class BuildRefused(NselfError):
    """Validation found errors; each is reported on its own line."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems[0].message, problems[0].hint)
        self.problems = problems


def _claims(
    answers: Iterable[tuple[str, Iterable[Any]]], key: Callable[[Any], Any], what: str, hint: str
) -> list[tuple[str, Any]]:
    """``(plugin, item)`` for every item of the answers; a ``key`` claimed twice fails
    naming both plugins (``what``: e.g. "service {} is contributed")."""
    owners: dict[Any, str] = {}
    claimed = []
    for plugin, answer in answers:
        for item in answer:
            if key(item) in owners:
                clash = what.format(key(item))
                raise NselfError(f"{clash} by both {owners[key(item)]} and {plugin}", hint)
            owners[key(item)] = plugin
            claimed.append((plugin, item))
    return claimed


def declared_settings(pm: Manager) -> dict[str, Setting]:
    """Every setting the plugins declare; a name declared twice fails naming both."""
    claims = _claims(
        pm.answers("declare_settings"),
        lambda setting: setting.name,
        "setting {} is declared",
        "rename the setting in one of the plugins, or disable one of them",
    )
    return {setting.name: setting for _plugin, setting in claims}


def load_config(project_dir: Path, target: str, kind: type[C]) -> tuple[C, Manager]:
    """Resolved config of ``target`` (declared defaults, derived values), and the manager."""
    pm = make_manager(project_dir)
    pm.hook.prepare_env_files(project_dir=project_dir, env=target)
    config = load(project_dir, target, kind)
    config.pluginmanager = pm
    config.declared = settings = declared_settings(pm)
    # Declared defaults apply where no layer sets the name.
    history = config.resolver.history
    config.resolver.add(
        Entry(s.name, s.default, DEFAULT_LABEL, 0)
        for s in settings.values()
        if s.default is not None and s.name not in history
    )
    # Derived values (DATABASE_URL...) beat declared defaults, not env files.
    answers = pm.answers("contribute_env", config=config)
    claims = _claims(
        [(plugin, answer.items()) for plugin, answer in answers],
        lambda pair: pair[0],
        "{} is derived",
        "disable one of them",
    )
    derived = {"ENV": config.env} | dict(pair for _plugin, pair in claims)
    config.derived = set(derived)
    config.resolver.add(
        Entry(name, value, envfiles.COMPUTED, 0, literal=True)
        for name, value in derived.items()
        if name not in history or history[name][-1].file == DEFAULT_LABEL
    )
    config.resolver.resolve_all()  # surfaces undefined references, naming file and line
    config.remember_secrets()
    return config, pm


def plan(
    project_dir: Path, target: str, kind: type[C], check: Callable[[C, list[GeneratedFile]], None]
) -> Plan[C]:
    """Everything a build of ``target`` writes, computed in memory and checked (``check``:
    the caller's own check of the files, raising before the plugins' ``validate_files``)."""
    config, pm = load_config(project_dir, target, kind)
    warnings: list[Problem] = []
    _refuse_errors(warnings, pm.hook.validate_config(config=config))
    stack = collect_stack(pm, config)
    files = collect_files(pm, "contribute_files", config=config, stack=stack)
    check(config, files)
    _refuse_errors(warnings, pm.hook.validate_files(config=config, stack=stack, files=files))
    return Plan(config, stack, files, warnings, project_dir)


def _refuse_errors(warnings: list[Problem], answers: list[list[Problem]]) -> None:
    """Stop on any error of a ``validate_*`` hook; keep the warnings, each once."""
    problems = [p for answer in answers for p in answer]
    if errors := [p for p in problems if p.level == "error"]:
        raise BuildRefused(list(dict.fromkeys(errors)))
    warnings.extend(p for p in dict.fromkeys(problems) if p not in warnings)


def collect_stack(pm: Manager, config: Config) -> Stack[Any, Any, Any]:
    """Services, routes and migrations the plugins contribute, each name with one owner."""
    claims = _claims(
        pm.answers("contribute_services", config=config),
        lambda service: service.name,
        "service {!r} is contributed",
        "disable one of the plugins or rename the service",
    )
    owners = {service.name: plugin for plugin, service in claims}
    services = [service for _plugin, service in claims]
    routes = _claims(
        [
            (_router(plugin, route), [route])
            for plugin, answer in pm.answers("contribute_nginx", config=config)
            for route in answer
        ],
        lambda route: route.subdomain,
        "subdomain {!r} is routed",
        "give one of them another subdomain",
    )
    migrations = [m for answer in pm.hook.contribute_migrations(config=config) for m in answer]
    return Stack(
        services=sorted(services, key=lambda s: s.name),
        routes=sorted((r for _who, r in routes), key=lambda r: (r.subdomain == "*", r.subdomain)),
        migrations=migrations,
        owners=owners,
    )


def _router(plugin: str, route: Any) -> str:
    """Who routes ``route``, for messages: the plugin and, where not plain, which of its
    routes (its ``source``, e.g. the env-file slot ``CS_2``, or its service)."""
    which = route.source or route.service or route.upstream_host
    return plugin if which == plugin else f"{plugin} ({which})"


def collect_files(pm: Manager, hook: str, **kwargs: Any) -> list[GeneratedFile]:
    """The files plugins answer to ``hook``, sorted; each inside the project, not the
    kernel's own, and claimed by one plugin."""
    claims = _claims(
        pm.answers(hook, **kwargs),
        lambda f: f.path,
        "file {} is generated",
        "disable one of the plugins",
    )
    for plugin, item in claims:
        path = Path(item.path)
        if path.is_absolute() or ".." in path.parts:
            raise NselfError(f"plugin {plugin} wants to write outside the project: {item.path}")
        if path.parts[0] == STATE_DIR or path.as_posix() in envfiles.RESERVED:
            raise NselfError(
                f"plugin {plugin} wants to write {item.path}, which nself keeps for itself",
                "env files and .nself/ are never generated by plugins",
            )
    return sorted((item for _plugin, item in claims), key=lambda f: f.path)
