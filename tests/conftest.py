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
