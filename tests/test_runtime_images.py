"""Images nself builds: a rebuilt one replaces the project's previous build, a failed build
says what its step printed (real engine)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import remove_project, standin, use_standins
from nself_sdk.testing import Result

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


@pytest.fixture
def stack(tmp_path: Path, nself: Run) -> Iterator[tuple[Path, str]]:
    name = f"nselfimg{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    assert nself("init", str(folder), "--name", name).code == 0
    try:
        yield folder, name
    finally:
        remove_project(name)
        for version in (1, 2):
            subprocess.run(["docker", "image", "rm", "-f", f"{name}-app:{version}"],
                           capture_output=True)  # fmt: skip


def test_a_rebuilt_image_replaces_the_previous_build(stack: tuple[Path, str], nself: Run) -> None:
    folder, name = stack
    code = folder / "services" / "app"
    code.mkdir(parents=True)

    def release(version: int) -> Result:
        (code / "Dockerfile").write_text(f"FROM {standin('http')}\nLABEL release={version}\n")
        use_standins(folder, CS_1_NAME="app", CS_1_BUILD="./services/app",
                     CS_1_IMAGE=f"{name}-app:{version}", CS_1_PORT="8080")  # fmt: skip
        return nself("start", "app", "--timeout", "120", cwd=folder)

    first = release(1)
    assert first.code == 0, first.output
    assert image_exists(f"{name}-app:1")
    second = release(2)
    assert second.code == 0, second.output
    assert image_exists(f"{name}-app:2")
    assert not image_exists(f"{name}-app:1")  # the old build went once the new one ran


def test_a_failed_build_says_what_its_step_printed_whole(
    stack: tuple[Path, str], nself: Run
) -> None:
    """The error names the failed step and its own last lines, never cut mid-URL."""
    folder, _name = stack
    code = folder / "services" / "app"
    code.mkdir(parents=True)
    url = "http://mirror.example/debian/pool/main/c/curl/libcurl4_7.88.1-10+deb12u12_amd64.deb"
    (code / "Dockerfile").write_text(
        f"FROM {standin('http')}\n"
        f'RUN echo "E: Failed to fetch {url}  Could not resolve host: mirror.example" >&2'
        " && exit 100\n"
    )
    use_standins(folder, CS_1_NAME="app", CS_1_BUILD="./services/app", CS_1_PORT="8080")
    result = nself("start", "app", "--timeout", "120", cwd=folder)
    assert result.code == 3, result.output  # a custom service: isolated, the start degraded
    line = next(ln for ln in result.err.splitlines() if "isolated by the circuit breaker" in ln)
    assert "image build failed: step [app 2/2] (exit code 100)" in line, line
    assert f"{url}  Could not resolve host: mirror.example" in line, line
