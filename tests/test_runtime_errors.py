"""Engine problems (missing, stopped, no permission) are one clear error, never a traceback.

These use real conditions instead of a mock: a socket nobody listens on, a socket owned by
another user, a PATH without Docker. They need no running engine.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nself_sdk.testing import Result

Run = Callable[..., Result]
SETPRIV = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]


def test_a_dead_engine_socket_is_one_clear_error(
    project: Path, nself: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert nself("build", cwd=project).code == 0
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/gone.sock")
    for command in (["status"], ["health"], ["start"], ["stop"], ["down"], ["logs", "postgres"]):
        result = nself(*command, cwd=project)
        assert result.code == 1, (command, result.output)
        assert f"the Docker engine is not running (cannot reach unix://{tmp_path}" in result.err
        assert "hint: start it" in result.err
        assert "Traceback" not in result.output


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_no_permission_on_the_socket_is_one_clear_error(project: Path, tmp_path: Path) -> None:
    nself_bin = str(Path(sys.executable).parent / "nself")
    assert subprocess.run([nself_bin, "build"], cwd=project, capture_output=True).returncode == 0
    # A socket owned by someone else, mode 0600; the command runs as root without the
    # capability that bypasses file permissions, as an ordinary user would.
    path = tmp_path / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    os.chown(path, 65534, 65534)
    path.chmod(0o600)
    try:
        done = subprocess.run(
            [*SETPRIV, nself_bin, "status"],
            cwd=project,
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_HOST": f"unix://{path}"},
        )
    finally:
        listener.close()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: no permission to use the Docker engine" in done.stderr
    assert "docker group" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_docker_installed_commands_say_so(
    project: Path, nself: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert nself("build", cwd=project).code == 0
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    # No docker command, and no engine socket where one would be.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    for command in (["start"], ["status"], ["stop"]):
        result = nself(*command, cwd=project)
        assert result.code == 1, (command, result.output)
        assert "error: Docker is not installed" in result.err
        assert "hint: install Docker Engine" in result.err
