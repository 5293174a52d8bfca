"""A pytest helper for plugin authors: a throw-away project with your plugin, built.

::

    from nself_sdk.testing import plugin_stack

    def test_my_plugin(tmp_path):
        stack = plugin_stack("path/to/my-bundle", tmp_path, env={"MY_PLUGIN_MODE": "fast"})
        assert stack.service("my-plugin")["image"] == "me/my-plugin:1.0.0"
        assert "my-plugin.local.nself.org" in stack.file("nginx/sites/my-plugin.conf")

A bundle is installed exactly as ``nself plugin install ./folder`` does (checks, lock
file, port). A Python plugin is found through its entry point once it is installed in the
environment (``pip install -e .``); call ``plugin_stack(None, tmp_path)`` for it. Nothing
is started: the result is what ``nself build`` generated, parsed for assertions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nself.build import Plan
from nself.model import Migration, Route, Service


@dataclass
class PluginStack:
    """What ``nself build`` generated for the throw-away project."""

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
        """A generated file's text, relative to the project."""
        target = self.project / path
        if not target.is_file():
            raise AssertionError(f"{path} was not generated")
        return target.read_text(encoding="utf-8")

    def setting(self, name: str) -> str | None:
        """A resolved setting, as in .env.computed."""
        return self.plan.config.get(name)


def _run(project: Path, *args: str) -> None:
    import typer

    from nself.cli import make_app
    from nself.console import state

    command = typer.main.get_command(make_app())
    saved = (state.debug, state.project)
    try:
        command.main(args=["-C", str(project), *args], prog_name="nself", standalone_mode=False)
    finally:
        state.debug, state.project = saved


def plugin_stack(
    bundle: Path | str | None,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    target: str | None = None,
    name: str = "plugintest",
    domain: str | None = None,
    extra_bundles: Sequence[Path | str] = (),
) -> PluginStack:
    """Create a project in ``tmp_path``, install ``bundle`` (and ``extra_bundles`` first,
    e.g. its dependencies), set ``env`` (in .env.local for dev, else .env.<target>), build.
    ``domain`` defaults to the project plugin's (``local.nself.org``).

    Raises the same ``NselfError`` a user would see when the plugin is rejected.
    """
    import yaml

    from nself.build import build

    project = tmp_path / name
    _run(project, "init", str(project), "--name", name, *(["--domain", domain] if domain else []))
    for extra in extra_bundles:
        _run(project, "plugin", "install", str(Path(extra).resolve()))
    if bundle is not None:
        _run(project, "plugin", "install", str(Path(bundle).resolve()))
    if env:
        layer = ".env.local" if target in (None, "dev", "local") else f".env.{target}"
        path = project / layer
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        path.write_text(text + "".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    result = build(project, target)
    compose = yaml.safe_load((project / "docker-compose.yml").read_text(encoding="utf-8"))
    plan = result.plan
    values = {k: plan.config.get(k) or "" for k in plan.config.names()}
    return PluginStack(project=project, plan=plan, compose=compose, env=values)


__all__ = ["PluginStack", "plugin_stack"]
