"""The newcomer's path: init, then build, gives files Compose accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from nself_sdk.testing import Result


def test_init_then_build_writes_the_stack(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    result: Result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert (project / "docker-compose.yml").is_file()
    assert (project / ".env.computed").stat().st_mode & 0o777 == 0o600
    compose = subprocess.run(
        ["docker", "compose", "--env-file", ".env.computed", "config", "-q"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert compose.returncode == 0, compose.stderr
