"""Python plugins (found through the ``nself.plugins`` entry points) and the author helper."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nself_sdk import Config, NselfError, Service, hookimpl
from nself_sdk.testing import Result, StackFactory
from plugin_helpers import make_bundle

Run = Callable[..., Result]

MODULE = '''\
"""A third-party plugin, installed like `pip install nself-greeter` would."""
from nself_sdk import Route, Service, Setting, hookimpl


@hookimpl
def declare_settings():
    return [Setting("GREETER_TEXT", "hi", "What the greeter says.")]


@hookimpl
def contribute_services(config):
    return [
        Service(
            name="greeter",
            image="nself-standin/http:3",
            role="plugin",
            port=3833,
            environment={"PORT": "3833", "TEXT": "${GREETER_TEXT}"},
        )
    ]


@hookimpl
def contribute_nginx(config):
    return [Route("greeter", "greeter", 3833, service="greeter")]
'''


@pytest.fixture
def greeter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real distribution on sys.path: module + dist-info with an entry point."""
    site = tmp_path / "site"
    (site / "nself_greeter").mkdir(parents=True)
    (site / "nself_greeter" / "__init__.py").write_text(MODULE)
    meta = site / "nself_greeter-1.2.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: nself-greeter\nVersion: 1.2.0\n")
    (meta / "entry_points.txt").write_text("[nself.plugins]\ngreeter = nself_greeter\n")
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("nself_greeter", None)


def test_pip_installed_plugin_joins_the_stack(
    greeter: None, project: Path, nself: Run, tmp_path: Path
) -> None:
    listed = nself("plugin", "list", cwd=project)
    assert listed.code == 0, listed.output
    assert "greeter" in listed.out and "python" in listed.out and "1.2.0" in listed.out
    built = nself("build", cwd=project)
    assert built.code == 0, built.output
    compose = (project / "docker-compose.yml").read_text()
    assert "greeter:" in compose and "org.nself.plugin: greeter" in compose
    assert (project / "nginx/sites/greeter.conf").is_file()
    # A bundle cannot take the name of an installed Python plugin.
    result = nself("plugin", "install", "--yes", str(make_bundle(tmp_path, "greeter")), cwd=project)
    assert result.code == 1 and "a Python plugin named 'greeter'" in result.err


def test_bundle_may_depend_on_a_python_plugin(
    greeter: None, tmp_path: Path, nself_stack: StackFactory
) -> None:
    folder = make_bundle(
        tmp_path / "b", "greeter-addon", extra='[dependencies]\ngreeter = ">=1.0"\n'
    )
    stack = nself_stack(folder)
    assert {"greeter", "greeter-addon"} <= {s.name for s in stack.services}


def test_a_stack_with_a_bundle(nself_stack: StackFactory) -> None:
    bundle = Path(__file__).resolve().parents[1] / "plugin_registry" / "catalogue" / "pgbouncer"
    stack = nself_stack(bundle, env={"PGBOUNCER_POOL_SIZE": "7"})
    assert stack.service("pgbouncer")["image"].startswith("edoburu/pgbouncer:")
    assert stack.port("pgbouncer") == 3820
    assert stack.setting("PGBOUNCER_POOL_SIZE") == "7"
    assert "default_pool_size = 7" in stack.file("plugin-files/pgbouncer/config/pgbouncer.ini")
    assert stack.env["PGBOUNCER_PORT"] == "3820"
    with pytest.raises(AssertionError, match="no service 'nope'"):
        stack.service("nope")


def test_a_stack_raises_what_a_user_would_see(tmp_path: Path, nself_stack: StackFactory) -> None:
    folder = make_bundle(tmp_path / "b", "future", extra='requires_nself = ">=9"\n')
    with pytest.raises(NselfError, match="requires nself >=9"):
        nself_stack(folder)


def test_a_stack_for_a_server_target(nself_stack: StackFactory) -> None:
    """target="prod" builds as a prod build does: the target's own secrets, its build
    folder (.nself/targets/prod), read by service() and file() alike."""
    stack = nself_stack(Echo(), env={"BASE_DOMAIN": "example.com"}, target="prod")
    assert stack.plan.root == stack.project / ".nself" / "targets" / "prod"
    assert stack.service("echo")["labels"]["org.nself.env"] == "prod"
    assert "api.example.com" in stack.file("nginx/sites/api.conf")
    dev = (stack.project / ".env.dev").read_text()
    assert f"POSTGRES_PASSWORD={stack.setting('POSTGRES_PASSWORD')}" not in dev  # its own


class Echo:
    """A plugin that is an object, not a module."""

    nself_name = "echo"

    @hookimpl
    def contribute_services(self, config: Config) -> list[Service]:
        return [Service(name="echo", image="nself-standin/http:3", role="plugin", port=3834)]


def test_a_plugin_with_no_hook_is_named(nself_stack: StackFactory) -> None:
    """A module whose plugin is an object in it (``whoami = "nself_whoami:plugin"``),
    given itself, would take part with no hook at all, without a word."""
    import types

    module = types.ModuleType("nself_echo")
    module.plugin = Echo()  # type: ignore[attr-defined]
    with pytest.raises(
        TypeError,
        match=r"^plugin nself_echo implements no nself hook: did "
        r"you mean nself_echo\.plugin\?$",
    ):
        nself_stack(module)
    with pytest.raises(TypeError, match=r"implements no nself hook$"):
        nself_stack(object())
    assert nself_stack(module.plugin).service("echo")


def test_plugin_objects_and_bundles_in_one_stack(
    tmp_path: Path, nself_stack: StackFactory, nself: Run
) -> None:
    import nself_builtins.custom

    bundle = make_bundle(tmp_path / "b", "hello")
    # The custom plugin is installed: given again, it is left as it is (not registered
    # twice, which pluggy would refuse).
    env = {"CS_1_NAME": "api", "CS_1_IMAGE": "nself-standin/http:3", "CS_1_PORT": "8001"}
    stack = nself_stack(Echo(), nself_builtins.custom, bundle, env=env)
    assert stack.service("echo")["image"] == "nself-standin/http:3"
    assert stack.port("hello") in range(3820, 3850)
    assert "api" in {s.name for s in stack.services}
    # The object takes part in every run of the test, found as an installed plugin is.
    listed = nself("plugin", "list", "--json", cwd=stack.project)
    assert listed.code == 0, listed.output
    kinds = {row["name"]: row["kind"] for row in json.loads(listed.out)}
    assert kinds["echo"] == "python" and kinds["hello"] == "bundle"
    assert "nself_builtins.custom" not in kinds


def test_a_given_plugin_is_gone_after_its_test(tmp_path: Path) -> None:
    """Run with pytest itself: the second test no longer sees the first test's plugin."""
    import subprocess

    (tmp_path / "test_two.py").write_text(
        "from nself_sdk import Service, hookimpl\n\n"
        "class Once:\n"
        "    @hookimpl\n"
        "    def contribute_services(self, config):\n"
        "        return [Service(name='once', image='nself-standin/http:3', port=3835)]\n\n"
        "def test_given(nself_stack):\n"
        "    assert 'once' in {s.name for s in nself_stack(Once()).services}\n\n"
        "def test_gone(nself_stack):\n"
        "    assert 'once' not in {s.name for s in nself_stack().services}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_two.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout + done.stderr


DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins" / "python.md"


def test_the_authors_guide_example_runs_as_written(tmp_path: Path) -> None:
    """python.md's package (module, pyproject.toml, tests) written out as the guide names
    the files, then its `pytest -q` run in that folder: a third-party plugin tested with
    nothing but nself's pytest plugin, which pytest finds through its entry point."""
    import re
    import subprocess

    text = DOCS.read_text()
    files = re.findall(r"```\w+ (\S+)\n(.*?)```", text, re.DOTALL)
    assert {path for path, _body in files} == {
        "nself_whoami/__init__.py",
        "pyproject.toml",
        "tests/test_whoami.py",
    }
    for path, body in files:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body)
    command, expected = re.findall(r"```console\n\$ (pytest.*?)\n(.*?)```", text, re.DOTALL)[0]
    done = subprocess.run(
        [sys.executable, "-m", *command.split(), "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert expected.strip() in done.stdout, done.stdout


def test_the_documented_declared_service_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nself_stack: StackFactory
) -> None:
    """python.md's ServicePlugin, as an entry point to the object: it builds, routes, can
    be switched off, and keeps its image's contract."""
    import re

    from nself_sdk.contract import problems

    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)
    module = next(block for block in blocks if "ServicePlugin(" in block)
    site = tmp_path / "site"
    (site / "nself_whoami").mkdir(parents=True)
    (site / "nself_whoami" / "__init__.py").write_text(module)
    meta = site / "nself_whoami-1.0.0.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: nself-whoami\nVersion: 1.0.0\n")
    (meta / "entry_points.txt").write_text("[nself.plugins]\nwhoami = nself_whoami:plugin\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        stack = nself_stack(env={"WHOAMI_NAME": "test"})
        service = stack.plan.stack.service("whoami")
        assert service is not None
        assert stack.service("whoami")["image"] == "traefik/whoami:v1.10.3"
        assert stack.setting("WHOAMI_NAME") == "test"
        assert "whoami.local.nself.org" in stack.file("nginx/sites/whoami.conf")
        assert problems(service, stack.plan.config, stack.plan.files, stack.plan.stack.routes) == []
        off = nself_stack(env={"WHOAMI_ENABLED": "false"})
        assert off.plan.stack.service("whoami") is None
        mirror = nself_stack(env={"WHOAMI_IMAGE": "mirror/whoami:1"})
        assert mirror.service("whoami")["image"] == "mirror/whoami:1"
    finally:
        sys.modules.pop("nself_whoami", None)


def test_a_plugin_object_registers_its_marked_methods_only() -> None:
    """Plugin objects (a ServicePlugin, a bundle) are registered like modules: the marked
    methods of their class (a subclass may override one unmarked), and a function set on
    the object itself."""
    from nself.plugins import Manager
    from nself_sdk import Setting, hookimpl

    class Base:
        @hookimpl
        def declare_settings(self) -> list[Setting]:
            return [Setting("BASE_A", "1")]

        @hookimpl
        def validate_config(self, config: object) -> list[object]:
            return []

    class Child(Base):
        def validate_config(self, config: object) -> list[object]:  # no longer a hook
            return []

    @hookimpl
    def contribute_env(config: object) -> dict[str, str]:
        return {"CHILD_ENV": "1"}

    child = Child()
    child.contribute_env = contribute_env  # type: ignore[attr-defined]
    pm = Manager()
    pm.register(child, name="child")
    hooks = {h.name for h in pm.get_hookcallers(child) or []}
    assert hooks == {"declare_settings", "contribute_env"}
    assert pm.hook.declare_settings() == [[Setting("BASE_A", "1")]]


def test_the_stable_surface_is_what_the_guide_documents() -> None:
    """Every name ``nself_sdk`` exports is in the guide's table of the stable surface, and
    nothing else: the kernel's own machinery (its plugin manager, the rollback, the
    entry-point scan) is not offered to third-party authors."""
    import re

    import nself_sdk

    row = next(line for line in DOCS.read_text().splitlines() if line.startswith("| `nself_sdk` |"))
    documented = set(re.findall(r"`([A-Za-z_]+)[`(]", row.split("|")[2]))
    assert set(nself_sdk.__all__) == documented
    assert not {"plugin_manager", "rollback", "entry_point_plugins"} & set(dir(nself_sdk))
