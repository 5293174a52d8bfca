"""A bundle's container on the real engine: status, logs, and remove --delete-data."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import standin
from nself_builtins.plugins.store import install_folder, read_lock
from nself_sdk import load_config, runtime
from nself_sdk.testing import Result, set_env
from plugin_helpers import make_bundle

Run = Callable[..., Result]

SERVICE = f"""
[service]
image = "{standin("http")}"
command = ["sh", "-c", "echo hello-started; exec busybox httpd -f -p $PORT -h /www"]

[service.environment]
PORT = "${{HELLO_PORT}}"

[service.volumes]
data = "/data"

[service.health]
path = "/health"
command = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:${{HELLO_PORT}}/health"]
interval = "1s"
start_period = "1s"
retries = 30
"""


@pytest.fixture
def running(project: Path, tmp_path: Path, nself: Run, docker_engine: None) -> Iterator[Path]:
    name = f"plugrt{os.getpid()}"
    set_env(project, PROJECT_NAME=name)
    install_folder(project, make_bundle(tmp_path, "hello", extra=SERVICE))
    assert nself("build", cwd=project).code == 0
    rt = runtime(load_config(project))
    try:
        outcome = rt.up(["hello"], timeout=60)
        assert outcome.ok, outcome.failed
        yield project
    finally:
        rt.down(volumes=True)


def volumes(project_name: str) -> list[str]:
    done = subprocess.run(
        [
            "docker",
            "volume",
            "ls",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={project_name}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


@pytest.mark.docker
def test_status_logs_and_delete_data(running: Path, nself: Run) -> None:
    project = running
    name = f"plugrt{os.getpid()}"
    status = nself("plugin", "status", "--json", cwd=project)
    assert status.code == 0, status.output
    (row,) = json.loads(status.out)
    assert row["name"] == "hello" and row["health"] == "healthy" and row["port"] == 3820
    assert row["missing"] == []
    logs = nself("plugin", "logs", "hello", "--tail", "20", cwd=project)
    assert logs.code == 0 and "hello-started" in logs.out, logs.output
    assert f"{name}_plugin_hello_data" in volumes(name)
    # Without --delete-data the data stays; with it, container and volume go first.
    removed = nself("plugin", "remove", "hello", "--delete-data", "--yes", cwd=project)
    assert removed.code == 0, removed.output
    assert f"deleted volume {name}_plugin_hello_data" in removed.out
    assert "removed container" in removed.out
    assert volumes(name) == []
    assert "hello" not in read_lock(project)


@pytest.mark.docker
def test_logs_of_unknown_plugin(project: Path, nself: Run) -> None:
    result = nself("plugin", "logs", "ghost", cwd=project)
    assert result.code == 1 and "plugin ghost is not installed" in result.err


MIRRORED = """
[service]
image = "registry.invalid/nself-test/ghost:1.0"

[service.environment]
PORT = "${GHOST_PORT}"

[service.health]
command = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:${GHOST_PORT}/health"]
interval = "1s"
start_period = "1s"
retries = 30
"""


@pytest.mark.docker
def test_a_bundles_image_setting_runs_a_mirror(
    project: Path, tmp_path: Path, nself: Run, docker_engine: None
) -> None:
    """The circuit breaker's hint names the bundle's image setting, and setting it works
    (air-gapped and mirror users run every image from their own registry)."""
    name = f"plugimg{os.getpid()}"
    set_env(project, PROJECT_NAME=name)
    install_folder(project, make_bundle(tmp_path, "ghost", extra=MIRRORED))
    try:
        unreachable = nself("start", "ghost", "--timeout", "60", cwd=project)
        assert unreachable.code == 3, unreachable.output  # a plugin: isolated, degraded
        assert "image registry.invalid/nself-test/ghost:1.0 cannot be pulled" in unreachable.err
        assert "hint: set GHOST_IMAGE to an image this host can get" in unreachable.err
        # `health` says what `start` said: degraded (3), not failed
        health = nself("health", "ghost", cwd=project)
        assert health.code == 3 and "ghost" in health.out and "unhealthy" in health.out
        set_env(project, ".env.local", GHOST_IMAGE=standin("http"))
        mirrored = nself("start", "ghost", "--timeout", "60", cwd=project)
        assert mirrored.code == 0, mirrored.output
        status = {r["service"]: r for r in json.loads(nself("status", "--json", cwd=project).out)}
        assert status["ghost"]["health"] == "healthy"
        assert status["ghost"]["image"] == standin("http")
    finally:
        runtime(load_config(project)).down(volumes=True)


NEVER_RUNS = """
[service]
image = "%s"
entrypoint = ["/no/such/program"]

[service.health]
command = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:${BROKEN_PORT}/health"]
"""


@pytest.mark.docker
def test_a_container_the_engine_cannot_start_says_why(
    project: Path, tmp_path: Path, nself: Run, docker_engine: None
) -> None:
    """Created but never started: `start` shows the engine's own error, and the logs,
    empty since nothing ran, say why instead of printing nothing."""
    name = f"plugnr{os.getpid()}"
    set_env(project, PROJECT_NAME=name)
    install_folder(project, make_bundle(tmp_path, "broken", extra=NEVER_RUNS % standin("http")))
    try:
        started = nself("start", "broken", "--timeout", "60", cwd=project)
        assert started.code == 3, started.output
        line = next(ln for ln in started.err.splitlines() if "isolated by the circuit" in ln)
        assert "was created but not started: the engine says:" in line, line
        assert "/no/such/program" in line and "no such file or directory" in line, line
        for argv in (("plugin", "logs", "broken"), ("logs", "broken")):
            logs = nself(*argv, cwd=project)
            assert logs.code == 0, logs.output
            assert "has no logs: its container was created but never started" in logs.err
            assert "/no/such/program" in logs.err, logs.output
    finally:
        runtime(load_config(project)).down(volumes=True)
