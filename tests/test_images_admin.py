"""The admin UI gets exactly what it needs, in dev only: the project, read and written as
its owner (the 0600 env files included) and nothing more; its own data folder; Docker
only with ADMIN_DOCKER=true. Before, it ran with every capability dropped as a user that
could read none of the 0600 files, and without the Docker socket: only its page started.

The admin image cannot be obtained here. Its contract is the project mounted at
/workspace and its data at /app/data; the checks below run in a container of the admin
service as Compose defines it (the stand-in base image: sh, cat, curl). The project
belongs to uid 1000 and is built by that user, as on a developer's machine.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import standin, standin_project
from nself_sdk.testing import Result, set_env

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]
USER = 1000
PROBE = (
    "cat /workspace/.env.secrets >/dev/null && echo SECRETS-READ; "
    "touch /app/data/probe && echo DATA-WRITTEN; "
    "cat /etc/shadow >/dev/null 2>&1 || echo SHADOW-REFUSED; "
    "curl -sf --unix-socket /var/run/docker.sock http://engine/version | grep -q ApiVersion"
    " && echo DOCKER-REACHED; echo UID=$(id -u)"
)


def give_to_user(folder: Path) -> None:
    """What a build by the project's owner leaves: every file theirs, modes as written
    (nself here runs as root, whose build writes the same files and modes)."""
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, USER, USER, follow_symlinks=False)


@pytest.fixture
def admin_project(tmp_path: Path, nself: Run) -> Iterator[Path]:
    admin = {"ADMIN_ENABLED": "true", "ADMIN_IMAGE": standin("base")}
    with standin_project(nself, tmp_path, "nselfadm", **admin) as folder:
        give_to_user(folder)
        yield folder


def probe(nself: Run, folder: Path) -> str:
    built = nself("build", cwd=folder)
    assert built.code == 0, built.output
    give_to_user(folder)
    argv = ["docker", "compose", "--env-file", ".env.computed", "run", "--rm", "--no-deps"]
    done = subprocess.run(
        [*argv, "admin", "sh", "-c", PROBE], cwd=folder, capture_output=True, text=True
    )
    return done.stdout + done.stderr


def test_the_admin_reads_the_project_as_its_owner_and_docker_only_when_asked(
    admin_project: Path, nself: Run
) -> None:
    said = probe(nself, admin_project)
    for marker in ("SECRETS-READ", "DATA-WRITTEN", "SHADOW-REFUSED"):
        assert marker in said, said
    assert "DOCKER-REACHED" not in said
    assert f"UID={USER}" in said
    assert (admin_project / ".nself-admin" / "probe").stat().st_uid == USER

    set_env(admin_project, ".env.local", ADMIN_DOCKER="true")
    assert "DOCKER-REACHED" in probe(nself, admin_project)
