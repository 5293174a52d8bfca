"""Redis keeps running and keeps its data across restarts, with a stand-in that behaves like
the official image's entrypoint (tests/standins/redis-entrypoint.sh): started as root it
chowns /data under `set -e` and steps down to redis, whose umask 0077 makes appendonlydir
0700. Run the way nself generated it before, the second start failed (`find:
./appendonlydir: Permission denied`, container exited).

Real engine and Compose v2; the `stack` fixture disables Hasura and Auth (their images
cannot be obtained here).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from docker_helpers import docker, standin
from nself_sdk.testing import Result, set_env
from test_runtime_e2e import container_of, stack, wait_for  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]


def redis_cli(nself: Run, folder: Path, *args: str) -> str:
    # REDISCLI_AUTH is in the container's environment (the health check uses it too).
    result = nself(
        "exec", "--no-tty", "redis", "--", "redis-cli", "-h", "127.0.0.1", *args, cwd=folder
    )
    assert result.code == 0, result.output
    return result.out.strip()


def healthy(name: str, service: str) -> bool:
    state = container_of(name, service)["State"]
    return bool(state["Running"]) and state.get("Health", {}).get("Status") == "healthy"


def test_redis_survives_restart_stop_start_and_a_reboot(
    stack: tuple[Path, str, int],  # noqa: F811
    nself: Run,
) -> None:
    folder, name, _https = stack
    set_env(folder, ".env.local", REDIS_ENABLED="true", REDIS_IMAGE=standin("redis"))
    started = nself("start", "--with", "redis", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output
    assert redis_cli(nself, folder, "SET", "kept", "yes") == "OK"
    listing = docker("exec", container_of(name, "redis")["Id"], "ls", "-ld", "appendonlydir")
    assert listing.stdout.startswith("drwx------"), listing.stdout  # the umask 0077 is real

    restarted = nself("restart", "redis", "--timeout", "120", cwd=folder)
    assert restarted.code == 0, restarted.output
    assert redis_cli(nself, folder, "GET", "kept") == "yes"

    assert nself("stop", "redis", cwd=folder).code == 0
    again = nself("start", "--with", "redis", "--timeout", "120", cwd=folder)
    assert again.code == 0, again.output
    assert redis_cli(nself, folder, "GET", "kept") == "yes"

    # A host reboot: the engine stops every container, then starts them again by their
    # restart policy, all at once and without Compose's ordering.
    ids = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={name}").stdout.split()
    docker("stop", *ids)
    docker("start", *ids)
    wait_for(lambda: healthy(name, "redis"), 60, "redis healthy after the reboot")
    assert container_of(name, "redis")["RestartCount"] == 0
    assert redis_cli(nself, folder, "GET", "kept") == "yes"
