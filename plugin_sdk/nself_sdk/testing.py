"""nself's pytest plugin: fixtures to test a plugin, used by nself's own suite as well.

It is installed with nself (the ``pytest11`` entry point ``nself``), so every test in an
environment that has nself gets these fixtures without importing anything::

    import nself_whoami


    def test_whoami_is_routed(nself_stack):
        stack = nself_stack(nself_whoami, env={"WHOAMI_NAME": "test"})
        assert stack.setting("WHOAMI_NAME") == "test"
        assert "whoami.local.nself.org" in stack.file("nginx/sites/whoami.conf")

- ``nself``: run the CLI in-process, ``nself("build", "--json", cwd=folder)`` returns a
  ``Result`` (``code``, ``out``, ``err``, ``output``).
- ``nself_project``: a project just made by ``nself init`` in the test's ``tmp_path``.
- ``nself_env``: ``nself_env(NAME="value", layer=".env.prod")`` adds settings to one of
  ``nself_project``'s env files (``.env.local`` unless told); ``set_env(folder, layer,
  NAME="value")`` does it for any folder.
- ``nself_plugins``: ``nself_plugins(module_or_object, name=obj)`` makes plugin objects
  part of every nself run for the rest of the test, found exactly as an installed plugin
  is (an entry point of a distribution on ``sys.path``); a plugin that is installed
  already is left as it is.
- ``nself_stack``: ``nself_stack(*plugins, env=..., target=...)`` makes a throw-away
  project with plugin objects (as ``nself_plugins``) and bundle folders or archives
  (installed as ``nself plugin install`` does, in the order given: dependencies first),
  sets ``env`` (in ``.env.local``, or ``.env.<target>``) and builds it. Nothing is started;
  the ``PluginStack`` it returns is what ``nself build`` generated, parsed for assertions.
  A plugin nself rejects raises the ``NselfError`` a user would see.

When pytest starts, this module loads the SDK (about 30 ms); the CLI, Typer and the
plugins load when a fixture first runs nself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .model import Migration, Route, Service
    from .writer import Plan


@dataclass
class Result:
    """What one in-process ``nself`` run answered."""

    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


@dataclass
class PluginStack:
    """What ``nself build`` generated for a throw-away project."""

    project: Path
    plan: Plan
    compose: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def services(self) -> list[Service]:
        return self.plan.stack.services

    @property
    def routes(self) -> list[Route]:
        return self.plan.stack.routes

    @property
    def migrations(self) -> list[Migration]:
        return self.plan.stack.migrations

    def service(self, name: str) -> dict[str, Any]:
        """The service as written to docker-compose.yml."""
        services: dict[str, Any] = self.compose.get("services", {})
        if name not in services:
            raise AssertionError(f"no service {name!r} in the stack: {sorted(services)}")
        found: dict[str, Any] = services[name]
        return found

    def port(self, name: str) -> int | None:
        """The port of the contributed service ``name`` (plugins: from 3820-3849)."""
        for service in self.services:
            if service.name == name:
                return service.port
        raise AssertionError(f"no service {name!r} in the stack")

    def file(self, path: str) -> str:
        """A generated file's text, relative to the build's folder (the project's, or
        ``.nself/targets/TARGET`` for a server's build)."""
        target = self.plan.root / path
        if not target.is_file():
            raise AssertionError(f"{path} was not generated")
        return target.read_text(encoding="utf-8")

    def setting(self, name: str) -> str | None:
        """A resolved setting, as in .env.computed."""
        return self.plan.config.get(name)


def set_env(folder: Path, layer: str = ".env.local", **values: str) -> None:
    """Append settings to one of a project's env files (secrets files are kept 0600)."""
    path = folder / layer
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    text += "".join(f"{k}={v}\n" for k, v in values.items())
    path.write_text(text, encoding="utf-8")
    if layer.startswith(".env.secrets"):
        path.chmod(0o600)


def _run(*args: str, cwd: Path | None = None) -> int:
    """Run the CLI in this process as ``nself ARGS`` would; returns its exit code."""
    from nself.cli import main
    from nself.console import state

    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    saved = (state.debug, state.project)
    state.debug, state.project = False, None
    try:
        rv = main(list(args))
        return rv if isinstance(rv, int) else 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        state.debug, state.project = saved
        os.chdir(old)


def _raise_on_failure(*args: str) -> None:
    """Run ``nself ARGS`` quietly; a failure raises its exception (``NselfError``) instead
    of exiting."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from nself.cli import get_command, make_app
    from nself.console import state

    command = get_command(make_app())
    saved = (state.debug, state.project)
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            command.main(args=list(args), prog_name="nself", standalone_mode=False)
    finally:
        state.debug, state.project = saved


def plugin_name(plugin: object) -> str:
    """The name a plugin object gets: its ``nself_name``, else its module's or class's name."""
    named = getattr(plugin, "nself_name", None)
    if isinstance(named, str) and named:
        return named
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    return type(plugin).__name__


def _implements_a_hook(plugin: object) -> bool:
    """Whether ``plugin`` has an ``@hookimpl`` function (a module's own, or an object's)."""
    if isinstance(plugin, ModuleType):
        marked: list[Mapping[str, object]] = [vars(plugin)]
    else:
        marked = [vars(klass) for klass in type(plugin).__mro__]
        marked.append(getattr(plugin, "__dict__", {}))
    return any(hasattr(value, "nself_impl") for names in marked for value in names.values())


class _Given:
    """Plugin objects made discoverable for one test: a distribution (``*.dist-info`` with
    ``nself.plugins`` entry points) in a folder on ``sys.path``, each entry pointing at the
    object through a module of its own in ``sys.modules``."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.monkeypatch = folder, monkeypatch
        self.entries: dict[str, object] = {}
        self.prefix = f"_nself_given_{folder.name.replace('-', '_')}"

    def add(self, *plugins: object, **named: object) -> None:
        from nself.plugins import installed_plugins

        wanted = {plugin_name(p): p for p in plugins} | named
        installed = [plugin for _name, plugin in installed_plugins()]
        for name, plugin in wanted.items():
            if not _implements_a_hook(plugin):  # it would take part without a word
                inside = vars(plugin).items() if isinstance(plugin, ModuleType) else ()
                inner = [
                    f"{name}.{attr}"
                    for attr, value in inside
                    if not isinstance(value, ModuleType | type) and _implements_a_hook(value)
                ]
                guess = f": did you mean {' or '.join(inner)}?" if inner else ""
                raise TypeError(f"plugin {name} implements no nself hook{guess}")
            if any(plugin is p for p in installed) or self.entries.get(name) is plugin:
                continue  # installed (pip install -e .) or given already: found as it is
            if name in self.entries:
                raise ValueError(f"two different plugins were given the name {name!r}")
            self.entries[name] = plugin
        self._write()

    def _write(self) -> None:
        import sys

        lines = []
        for index, (name, plugin) in enumerate(sorted(self.entries.items())):
            module = f"{self.prefix}_{index}"
            self.monkeypatch.setitem(sys.modules, module, plugin)
            lines.append(f"{name} = {module}\n")
        meta = self.folder / "nself_test_plugins-0.dist-info"
        meta.mkdir(exist_ok=True)
        (meta / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: nself-test-plugins\nVersion: 0\n", encoding="utf-8"
        )
        (meta / "entry_points.txt").write_text(
            "[nself.plugins]\n" + "".join(lines), encoding="utf-8"
        )
        # A new sys.path is how nself knows to look for plugins again.
        self.monkeypatch.syspath_prepend(str(self.folder))


StackFactory = Callable[..., PluginStack]


@pytest.fixture
def nself(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run the CLI in-process: ``nself("build", cwd=project)`` -> ``Result``."""

    def run(*args: str, cwd: Path | None = None) -> Result:
        code = _run(*args, cwd=cwd)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def nself_project(tmp_path: Path, nself: Callable[..., Result]) -> Path:
    """A project folder just made by ``nself init`` (project name ``demo``)."""
    folder = tmp_path / "demo"
    result = nself("init", str(folder), "--name", "demo")
    assert result.code == 0, result.output
    return folder


@pytest.fixture
def nself_env(nself_project: Path) -> Callable[..., None]:
    """Add settings to ``nself_project``: ``nself_env(NAME="value", layer=".env.prod")``."""

    def add(layer: str = ".env.local", **values: str) -> None:
        set_env(nself_project, layer, **values)

    return add


@pytest.fixture
def nself_plugins(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., None]:
    """Make plugin objects (a module, or any object with ``@hookimpl`` functions) part of
    every nself run for the rest of the test: ``nself_plugins(my_plugin, other=obj)``.
    ``monkeypatch`` takes them away again."""
    return _Given(tmp_path_factory.mktemp("nself-plugins"), monkeypatch).add


@pytest.fixture
def nself_stack(tmp_path: Path, nself_plugins: Callable[..., None]) -> StackFactory:
    """Build a throw-away project with the given plugins (objects or bundle folders)."""
    made: list[Path] = []

    def build(
        *plugins: object,
        env: dict[str, str] | None = None,
        target: str | None = None,
        name: str = "plugintest",
        domain: str | None = None,
    ) -> PluginStack:
        import yaml

        from nself_sdk import build as nself_build

        objects = [p for p in plugins if not isinstance(p, str | os.PathLike)]
        bundles = [Path(p).resolve() for p in plugins if isinstance(p, str | os.PathLike)]
        if objects:
            nself_plugins(*objects)
        project = tmp_path / (name if not made else f"{name}-{len(made) + 1}")
        made.append(project)
        domains = ["--domain", domain] if domain else []  # else the project plugin's default
        _raise_on_failure("init", str(project), "--name", name, *domains)
        for bundle in bundles:
            _raise_on_failure("-C", str(project), "plugin", "install", str(bundle), "--yes")
        local = target in (None, "dev", "local")
        if not local:
            # What a server's build asks beyond the plugins under test: the target's own
            # strong secrets, and a mail relay for Auth (a placeholder: nothing is sent).
            import secrets

            _raise_on_failure("-C", str(project), "secrets", "generate", "--env", str(target))
            relay = {"AUTH_SMTP_HOST": "smtp.example.invalid", "AUTH_SMTP_USER": name}
            relay["AUTH_SMTP_PASS"] = secrets.token_hex(24)
            set_env(project, f".env.secrets.{target}", **relay)
        if env:
            set_env(project, ".env.local" if local else f".env.{target}", **env)
        plan = nself_build(project, target).plan
        compose_file = plan.root / "docker-compose.yml"
        text = compose_file.read_text(encoding="utf-8") if compose_file.exists() else "{}"
        values = {k: plan.config.get(k) or "" for k in plan.config.names()}
        return PluginStack(project=project, plan=plan, compose=yaml.safe_load(text), env=values)

    return build


__all__ = [
    "PluginStack",
    "Result",
    "StackFactory",
    "nself",
    "nself_env",
    "nself_plugins",
    "nself_project",
    "nself_stack",
    "plugin_name",
    "set_env",
]
