"""`nself secrets rotate` against a real running stack on the Docker engine.

Hasura and Auth are disabled (HASURA_ENABLED=false, AUTH_ENABLED=false) because their
images cannot be obtained on this machine (no container registry is reachable); Postgres
and nginx run from the local stand-in images. The custom service `dbcheck` logs in to
Postgres with the DATABASE_URL it is given and is healthy only while that login works, so
its health after a rotation proves it got, and the database accepts, the new password.
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
from nself_sdk.envfiles import parse_text
from nself_sdk.testing import Result

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]
LABEL = "com.docker.compose.project"

DBCHECK = """\
FROM {image}
RUN ln -sf /bin/busybox /usr/local/bin/wget
COPY run.sh /run.sh
ENTRYPOINT []
CMD ["sh", "/run.sh"]
"""
# /health exists only while a login with $DATABASE_URL succeeds.
RUN_SH = """\
trap 'exit 0' TERM INT
mkdir -p /tmp/www
while true; do
  if psql "$DATABASE_URL" -qAtc 'select 1' >/dev/null 2>&1; then
    echo ok >/tmp/www/health.new && mv /tmp/www/health.new /tmp/www/health
  else
    rm -f /tmp/www/health
  fi
  sleep 1
done &
busybox httpd -f -p "$PORT" -h /tmp/www &
wait
"""


def docker(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def remove_project(name: str) -> None:
    label = f"label={LABEL}={name}"
    ids = docker("ps", "-aq", "--filter", label).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids)
    for kind in ("network", "volume"):
        found = docker(kind, "ls", "-q", "--filter", label).stdout.split()
        if found:
            docker(kind, "rm", *found)
    images = docker("images", "-q", f"nself-{name}-*").stdout.split()
    if images:
        docker("rmi", "-f", *set(images))


def container(project: str, service: str) -> dict[str, Any]:
    ids = docker(
        "ps", "-q", "--filter", f"label={LABEL}={project}",
        "--filter", f"label=com.docker.compose.service={service}",
    ).stdout.split()  # fmt: skip
    assert len(ids) == 1, (service, ids)
    data: list[dict[str, Any]] = json.loads(docker("inspect", ids[0]).stdout)
    return data[0]


def login(project: str, password: str) -> bool:
    """A password login over TCP (scram-sha-256), as any client on the network does."""
    cid = container(project, "postgres")["Id"]
    done = docker(
        "exec", "-e", f"PGPASSWORD={password}", cid,
        "psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "nself", "-qAtc", "select 1",
    )  # fmt: skip
    return done.returncode == 0 and done.stdout.strip() == "1"


def values(path: Path) -> dict[str, str]:
    return {e.key: e.raw for e in parse_text(path.read_text(), path.name)}


@pytest.fixture
def stack(tmp_path: Path, nself: Run) -> Iterator[tuple[Path, str]]:
    name = f"nselfrot{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    assert nself("init", str(folder), "--name", name).code == 0
    check = folder / "services" / "dbcheck"
    check.mkdir(parents=True)
    (check / "Dockerfile").write_text(DBCHECK.format(image=standin("postgres")))
    (check / "run.sh").write_text(RUN_SH)
    use_standins(
        folder,
        CS_1_NAME="dbcheck",
        CS_1_BUILD="./services/dbcheck",
        CS_1_PORT="8001",
        CS_1_DEPENDS_ON="postgres",
        CS_1_ENV_DATABASE_URL="${DATABASE_URL}",
        CS_1_ENV_JWT_SECRET="${HASURA_GRAPHQL_JWT_SECRET}",
    )
    try:
        yield folder, name
    finally:
        remove_project(name)


def test_rotate_changes_the_running_database_and_restarts_its_users(
    stack: tuple[Path, str], nself: Run
) -> None:
    folder, name = stack
    assert nself("build", cwd=folder).code == 0
    started = nself("start", cwd=folder)
    assert started.code == 0, started.output
    old = values(folder / ".env.dev")["POSTGRES_PASSWORD"]
    assert login(name, old)
    nginx_before = container(name, "nginx")["Id"]

    rotated = nself("secrets", "rotate", "POSTGRES_PASSWORD", cwd=folder)
    assert rotated.code == 0, rotated.output
    new = values(folder / ".env.secrets")["POSTGRES_PASSWORD"]
    assert new != old
    # the database took the new password, and no longer the old one
    assert login(name, new) and not login(name, old)
    # users restarted in dependency order, and came back healthy (dbcheck logs in)
    out = rotated.out
    assert out.index("restarting postgres") < out.index("restarting dbcheck")
    assert "2 service(s) restarted and healthy" in out
    assert container(name, "dbcheck")["State"]["Health"]["Status"] == "healthy"
    env = container(name, "dbcheck")["Config"]["Env"]
    assert any(e.startswith("DATABASE_URL=") and f":{new}@" in e for e in env)
    assert container(name, "nginx")["Id"] == nginx_before  # not a user: untouched
    # the server only ever saw a SCRAM verifier: the password is in no output or log
    logs = (
        nself("logs", "postgres", cwd=folder).output + nself("logs", "dbcheck", cwd=folder).output
    )
    for secret in (old, new):
        assert secret not in rotated.output + started.output + logs

    # an indirect user: dbcheck gets the JWT secret built from HASURA_JWT_KEY
    jwt = nself("secrets", "rotate", "HASURA_JWT_KEY", "--yes", cwd=folder)
    assert jwt.code == 0, jwt.output
    assert "sign in again" in jwt.err
    assert "restarting dbcheck" in jwt.out and "restarting postgres" not in jwt.out
    key = values(folder / ".env.secrets")["HASURA_JWT_KEY"]
    env = container(name, "dbcheck")["Config"]["Env"]
    assert any(e.startswith("JWT_SECRET=") and key in e for e in env)
    assert key not in jwt.output
