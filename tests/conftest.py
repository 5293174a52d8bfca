"""Shared fixtures: throw-away projects, and the real tools the suites need."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nself.cli import main
from nself.console import state

STANDIN_TAG = os.environ.get("NSELF_STANDIN_TAG", "3")


def standin(name: str) -> str:
    return f"nself-standin/{name}:{STANDIN_TAG}"


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def output(self) -> str:
        return self.out + self.err


@pytest.fixture
def nself(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run the CLI in-process; returns exit code and captured output."""

    def run(*args: str, cwd: Path | None = None) -> Result:
        old = Path.cwd()
        if cwd is not None:
            os.chdir(cwd)
        state.debug, state.project = False, None
        code = 0
        try:
            rv = main(list(args))
            code = rv if isinstance(rv, int) else 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(old)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def project(tmp_path: Path, nself: Callable[..., Result]) -> Path:
    """A freshly initialised project folder."""
    folder = tmp_path / "demo"
    result = nself("init", str(folder), "--name", "demo")
    assert result.code == 0, result.output
    return folder


def set_env(folder: Path, file: str = ".env.local", **values: str) -> None:
    """Append settings to one of the project's env files."""
    path = folder / file
    text = path.read_text() if path.exists() else ""
    text += "".join(f"{k}={v}\n" for k, v in values.items())
    path.write_text(text)
    if file == ".env.secrets":
        path.chmod(0o600)


def docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


needs_docker = pytest.mark.skipif(
    not docker_ok() and not os.environ.get("CI"), reason="needs a Docker engine"
)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    if not docker_ok():
        pytest.fail("the Docker engine is not running (scripts/test starts it as root)")
    yield


def free_port() -> int:
    """A TCP port nothing listens on right now (for host ports of a test stack)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def use_standins(folder: Path, layer: str = ".env.local", **values: str) -> tuple[int, int]:
    """Point a project at the local stand-in images on free host ports; returns the
    (HTTP, HTTPS) ports. Hasura and Auth are disabled: their images (hasura/graphql-engine,
    nhost/hasura-auth) cannot be obtained on this machine."""
    http, https = free_port(), free_port()
    set_env(
        folder,
        layer,
        HASURA_ENABLED="false",
        AUTH_ENABLED="false",
        POSTGRES_IMAGE=standin("postgres"),
        NGINX_IMAGE=standin("nginx"),
        NGINX_HTTP_PORT=str(http),
        NGINX_HTTPS_PORT=str(https),
        **values,
    )
    return http, https
