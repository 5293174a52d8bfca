"""The runtime's pure parts: which services `start` picks, names, the compose file, output."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from nself_builtins.docker_runtime.compose import (
    _published,
    dependents,
    interpolate,
    read_project,
    with_dependencies,
)
from nself_builtins.lifecycle.project import Project, selection
from nself_builtins.lifecycle.report import health_line
from nself_sdk import HealthResult, Service, Stack, UsageError, load_config
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]


def fake_project(config: Any = None) -> Project:
    services = [
        Service("api", "x", title="api", role="custom", labels={"org.nself.slot": "CS_1"}),
        Service("minio", "x", title="MinIO", role="optional"),
        Service("postgres", "x", title="PostgreSQL", role="core"),
        Service("redis", "x", title="Redis", role="optional"),
        Service("notify", "x", title="notify", role="plugin"),
    ]
    owners = {"api": "custom", "minio": "storage", "postgres": "postgres", "redis": "redis"}
    owners["notify"] = "notify"
    stack = Stack(services=services, routes=[], migrations=[], owners=owners)
    return Project(Path("."), config, stack, cast(Any, None), {})


def test_start_picks_required_services_unless_told_otherwise() -> None:
    project = fake_project()
    assert selection(project, [], False, []) == ["api", "postgres", "notify"]
    assert selection(project, [], True, []) == ["api", "minio", "postgres", "redis", "notify"]
    # `--with minio redis`: click hands over `--with minio` and `redis` as an argument.
    assert selection(project, ["redis"], False, ["minio"]) == [
        "api",
        "postgres",
        "notify",
        "minio",
        "redis",
    ]
    assert selection(project, ["redis"], False, []) == ["redis"]
    # By plugin name (storage -> minio) and by the custom service's env name.
    assert selection(project, [], False, ["storage"])[-1] == "minio"
    assert project.resolve(["API", "PostgreSQL"]) == ["api", "postgres"]
    with pytest.raises(UsageError, match="unknown service 'mail'"):
        selection(project, [], False, ["mail"])


def test_health_lines_follow_the_seed_style() -> None:
    assert health_line(HealthResult("postgres", "PostgreSQL", "healthy", 2.2)) == (
        "✓ PostgreSQL healthy (2ms)"
    )
    assert health_line(
        HealthResult("search", "MeiliSearch", "degraded", 3, "index rebuilding")
    ) == ("⚠ MeiliSearch degraded  index rebuilding")
    line = health_line(
        HealthResult(
            "functions",
            "Functions",
            "unhealthy",
            0,
            "not started",
            "start container manually: nself start functions",
        )
    )
    assert (
        line
        == "✗ Functions unhealthy  not started  start container manually: nself start functions"
    )


def test_compose_values_resolve_like_compose_does(project: Path) -> None:
    set_env(project, ".env.local", A="one", EMPTY="")
    config = load_config(project)
    assert interpolate("${A}-${EMPTY:-d}-${MISSING-x}-$$HOME", config) == "one-d-x-$HOME"
    assert interpolate({"k": ["${A}"]}, config) == {"k": ["one"]}
    assert _published("127.0.0.1:8443:443/tcp") == ("127.0.0.1", 8443)
    assert _published("8080:80") == ("0.0.0.0", 8080)
    assert _published("80") is None
    assert _published({"published": "9000", "host_ip": "127.0.0.1"}) == ("127.0.0.1", 9000)


def test_the_generated_file_gives_services_roles_and_dependencies(
    project: Path, nself: Run
) -> None:
    set_env(
        project,
        ".env.local",
        CS_1_NAME="api",
        CS_1_IMAGE="example/api:1",
        CS_1_PORT="8001",
        CS_1_DEPENDS_ON="postgres",
    )
    assert nself("build", cwd=project).code == 0
    services = read_project(load_config(project))
    assert services["api"].role == "custom" and services["postgres"].role == "core"
    assert services["api"].depends_on == ("postgres",)
    assert services["postgres"].healthcheck is not None
    assert services["postgres"].healthcheck[:2] == ("CMD", "pg_isready")
    assert "${" not in " ".join(services["postgres"].healthcheck)
    assert with_dependencies(services, ["api"]) == ["postgres", "api"]
    assert "api" in dependents(services, "postgres")
    nginx_ports = services["nginx"].ports
    assert nginx_ports and all(ip == "127.0.0.1" for ip, _ in nginx_ports)


def test_commands_refuse_bad_input_with_usage_errors(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    no_command = nself("exec", "postgres", "--", cwd=project)
    assert no_command.code == 2 and "no command given" in no_command.err
    unknown = nself("logs", "nope", cwd=project)
    assert unknown.code == 2 and "unknown service 'nope'" in unknown.err
    assert "postgres" in unknown.err  # the hint lists what the stack has
    bad = nself("start", "--timeout", "0", cwd=project)
    assert bad.code == 2


def test_urls_need_no_engine(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", NGINX_HTTPS_PORT="8443")
    result = nself("urls", "--json", cwd=project)
    assert result.code == 0, result.output
    urls = json.loads(result.out)
    assert urls["hasura"] == "https://api.local.nself.org:8443"


def test_the_builtin_runtime_implements_the_interface(project: Path) -> None:
    from nself_sdk import Runtime, runtime

    rt = runtime(load_config(project))  # constructing it touches no engine
    assert isinstance(rt, Runtime)
    assert (rt.name, rt.project) == ("docker", "demo")


def test_another_runtime_can_be_chosen_by_name(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nself_sdk import NselfError, runtime

    monkeypatch.setenv("NSELF_RUNTIME", "podman")  # no such plugin installed here
    with pytest.raises(NselfError, match="no container runtime plugin"):
        runtime(load_config(project))


class _Container:
    """The two things `_current` reads of a Docker SDK container."""

    def __init__(self, id: str, labels: dict[str, str], image: str = "") -> None:
        self.id, self.labels, self.attrs = id, labels, {"Image": image}


def test_only_a_new_or_up_to_date_container_is_judged_during_up() -> None:
    from nself_builtins.docker_runtime.engine import CONFIG_HASH_LABEL, IMAGE_LABEL
    from nself_builtins.docker_runtime.start import _current

    labels = {CONFIG_HASH_LABEL: "h1", IMAGE_LABEL: "sha256:i1"}
    old = _Container("old", labels)
    # created by this up: judged, whatever it carries
    assert _current(_Container("new", {}), "old", ("h2", "sha256:i1"))
    assert _current(old, "", ("", ""))  # nothing was there before
    # the container seen before: only while it matches what Compose will keep
    assert _current(old, "old", ("h1", "sha256:i1"))
    assert not _current(old, "old", ("h2", "sha256:i1"))  # definition changed: recreated
    assert not _current(old, "old", ("h1", "sha256:i2"))  # image rebuilt under its tag
    assert not _current(old, "old", ("", ""))  # unknown hash: wait until Compose is done
    # without Compose's image label, the image the container runs
    assert _current(
        _Container("c", {CONFIG_HASH_LABEL: "h1"}, "sha256:i1"), "c", ("h1", "sha256:i1")
    )
    assert _current(old, "old", ("h1", ""))  # image id unknown: the hash decides


def test_the_runtime_protocol_is_the_sdks() -> None:
    """The contract lives in the SDK (the kernel never calls a runtime), and importing its
    module leaves ``nself_sdk.runtime`` the function that finds a project's runtime."""
    import importlib.util

    import nself_sdk
    from nself_sdk import Runtime, runtime

    assert Runtime.__module__ == "nself_sdk.containers"
    assert nself_sdk.runtime is runtime and callable(runtime)
    assert importlib.util.find_spec("nself.runtime") is None
