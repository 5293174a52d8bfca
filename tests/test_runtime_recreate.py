"""`nself start` after a change judges the containers Compose recreated, not the old ones.

Real engine, real Compose, local stand-in images (no registry is reachable here). Hasura
and Auth are disabled because their images cannot be obtained on this machine. The custom
service `probe` runs an image built from the http stand-in whose own HEALTHCHECK (probed
every second, failures counted after 10 s; CS_1_HEALTHCHECK=image) passes only READY_AFTER
seconds after the container started, and never while BROKEN=yes: changing either env value
makes Compose recreate it while the old container is still running and healthy.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from docker_helpers import standin, use_standins
from nself_sdk.testing import Result, set_env

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]
LABEL = "com.docker.compose.project"

PROBE = """\
FROM {image}
HEALTHCHECK --interval=1s --timeout=3s --start-period=10s --retries=2 \\
  CMD test "$BROKEN" != yes && test -f /tmp/ready && wget -q -O /dev/null "http://127.0.0.1:$PORT/health"
CMD ["sh", "-c", "(sleep ${{READY_AFTER:-0}}; touch /tmp/ready) & {serve}"]
"""
# The http stand-in's own command: httpd, stopped at once on TERM.
SERVE = "trap 'kill $pid; exit 0' TERM INT; busybox httpd -f -p $PORT -h /www & pid=$!; wait $pid"


def docker(*args: str, check: bool = False, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, **kw)


def containers(project: str, service: str) -> list[dict[str, Any]]:
    """Every container of ``service`` (also one Compose is about to remove)."""
    ids = docker(
        "ps", "-aq", "--filter", f"label={LABEL}={project}",
        "--filter", f"label=com.docker.compose.service={service}",
    ).stdout.split()  # fmt: skip
    if not ids:
        return []
    found: list[dict[str, Any]] = json.loads(docker("inspect", *ids).stdout)
    return found


def only(project: str, service: str) -> dict[str, Any]:
    found = containers(project, service)
    assert len(found) == 1, f"expected one {service} container, found {len(found)}"
    return found[0]


def health(container: dict[str, Any]) -> str:
    return str((container["State"].get("Health") or {}).get("Status") or "")


@pytest.fixture
def stack(tmp_path: Path, nself: Run) -> Iterator[tuple[Path, str]]:
    name = f"nselfrec{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    assert nself("init", str(folder), "--name", name).code == 0
    image = f"{name}-probe:1"
    docker(
        "build",
        "-q",
        "-t",
        image,
        "-",
        input=PROBE.format(image=standin("http"), serve=SERVE),
        check=True,
    )
    use_standins(
        folder,
        CS_1_NAME="probe",
        CS_1_IMAGE=image,
        CS_1_PORT="8001",
        CS_1_HEALTHCHECK="image",
        CS_1_ENV_READY_AFTER="0",
        CS_1_ENV_BROKEN="no",
        # Never changed: Compose keeps its container, and start accepts it as it is.
        CS_2_NAME="steady",
        CS_2_IMAGE=standin("http"),
        CS_2_PORT="8002",
    )
    try:
        yield folder, name
    finally:
        ids = docker("ps", "-aq", "--filter", f"label={LABEL}={name}").stdout.split()
        if ids:
            docker("rm", "-f", "-v", *ids)
        for kind in ("network", "volume"):
            found = docker(kind, "ls", "-q", "--filter", f"label={LABEL}={name}").stdout.split()
            if found:
                docker(kind, "rm", *found)
        docker("rmi", "-f", image)


def test_start_judges_the_recreated_containers(stack: tuple[Path, str], nself: Run) -> None:
    folder, name = stack
    assert nself("build", cwd=folder).code == 0
    first = nself("start", "--timeout", "120", cwd=folder)
    assert first.code == 0, first.output
    old = only(name, "probe")
    assert health(old) == "healthy"
    steady = only(name, "steady")["Id"]

    # Healthy, but only 4 s after it started: start returns once the NEW container is
    # healthy, although the old one was healthy all along. Judged by the engine's state at
    # the moment start returns, not by how long it took.
    set_env(folder, ".env.local", CS_1_ENV_READY_AFTER="4")
    assert nself("build", cwd=folder).code == 0
    slow = nself("start", "--timeout", "120", cwd=folder)
    now = containers(name, "probe")
    assert slow.code == 0, slow.output
    assert len(now) == 1 and now[0]["Id"] != old["Id"], "the old container is still there"
    assert now[0]["State"]["Running"] and health(now[0]) == "healthy"
    assert "READY_AFTER=4" in now[0]["Config"]["Env"]
    assert "stack is up: 4 services healthy" in slow.out
    assert only(name, "steady")["Id"] == steady  # unchanged: kept, and judged as it is
    healthy = now[0]

    # The new container fails its health check while the old one is healthy: the custom
    # service is isolated by the circuit breaker and start exits 3 (degraded).
    set_env(folder, ".env.local", CS_1_ENV_READY_AFTER="0", CS_1_ENV_BROKEN="yes")
    assert nself("build", cwd=folder).code == 0
    broken = nself("start", "--timeout", "120", cwd=folder)
    assert broken.code == 3, broken.output  # EXIT_DEGRADED
    assert "probe (probe) isolated by the circuit breaker: unhealthy" in broken.err
    assert "stack is degraded: 3 services up, 1 isolated (probe)" in broken.out
    judged = only(name, "probe")  # the healthy old one is gone: the reported one is new
    assert judged["Id"] != healthy["Id"]
    assert "BROKEN=yes" in judged["Config"]["Env"]
    assert health(judged) == "unhealthy" and judged["State"]["Status"] == "exited"
    assert only(name, "steady")["State"]["Running"]

    # `nself health` agrees: the core and the untouched service are fine.
    checked = nself("health", "postgres", "nginx", "steady", cwd=folder)
    assert checked.code == 0, checked.output
