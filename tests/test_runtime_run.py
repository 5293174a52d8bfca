"""``Runtime.run``: a command in a new container of a service, with its real exit status.

`docker compose run` exits 0 whatever the command did (Compose 2.40 here, with and
without --rm), so a failed one-off step (the certificate renewer's placeholders before an
ACME stack's first start, a throw-away ``nginx -t``) looked like success. The runtime
reads the exit status from the engine instead. Real engine, Compose v2, the nginx
stand-in.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from docker_helpers import docker, remove_project, use_standins
from nself_sdk import load_config, runtime
from nself_sdk.testing import Result

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]


def test_run_reports_the_commands_exit_status_and_leaves_no_container(
    tmp_path: Path, nself: Run
) -> None:
    name = f"nselfrun{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    assert nself("init", str(folder), "--name", name).code == 0
    use_standins(folder)
    assert nself("build", cwd=folder).code == 0
    try:
        rt = runtime(load_config(folder))
        failed = rt.run("nginx", ["sh", "-c", "echo said; echo complained >&2; exit 3"])
        assert failed.exit_code == 3
        assert failed.output.strip() == "said"
        assert failed.stderr.decode().strip() == "complained"
        assert rt.run("nginx", ["true"]).exit_code == 0
        left = docker(
            "ps", "-aq", "--filter", f"label=com.docker.compose.project={name}"
        ).stdout.split()
        assert left == []
    finally:
        remove_project(name)
