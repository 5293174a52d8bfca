"""A read replica of a deployed stack (issue #15): `nself db replica add|list|remove --env
staging` prepares the server's primary over SSH, and `nself deploy` ships the replica.

The "server" is this machine reached through a real OpenSSH daemon (see ``sshd.py``),
running the release on the real engine with the stand-in images, as in ``test_deploy``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nself_sdk.testing import Result
from sshd import ssh_server  # noqa: F401  (the fixture)
from test_deploy import site  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]


def psql(container: str, statement: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", container, "psql", "-X", "-U", "postgres", "-d", "nself",
         "-Atc", statement],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def listing(nself: Run, folder: Path) -> list[dict[str, object]]:
    out = nself("db", "replica", "list", "--env", "staging", "--json", cwd=folder)
    assert out.code == 0, out.output
    rows: list[dict[str, object]] = json.loads(out.out)
    return rows


def containers(name: str, service: str) -> str:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={name}",
         "--filter", f"label=com.docker.compose.service={service}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_a_replica_of_the_deployed_stack_is_prepared_over_ssh_and_shipped_by_deploy(
    site: tuple[Path, Path, int],  # noqa: F811
    nself: Run,
) -> None:
    folder, _remote, _port = site
    name = folder.name
    primary = f"{name}-postgres-1"
    assert nself("deploy", "staging", cwd=folder).code == 0
    assert psql(primary, "CREATE TABLE notes (n int)").returncode == 0

    added = nself("db", "replica", "add", "ro", "--env", "staging", cwd=folder)
    assert added.code == 0, added.output
    assert "kept in .env.staging" in added.out
    assert "created the replication slot nself_replica_ro" in added.out
    assert "next: nself deploy staging" in added.out
    assert "POSTGRES_REPLICAS=ro" in (folder / ".env.staging").read_text()
    assert (
        not (folder / ".env.local").exists()
        or "POSTGRES_REPLICAS" not in (folder / ".env.local").read_text()
    )
    [row] = listing(nself, folder)
    assert row["state"] == "disconnected" and row["container"] is None  # not shipped yet
    doctor = nself("doctor", "--env", "staging", "--check", "replication", cwd=folder)
    assert "replica ro is not connected; its slot nself_replica_ro keeps" in doctor.out
    assert "added since the last deploy? nself deploy staging" in doctor.out
    assert "`nself logs postgres-ro --env staging`" in doctor.out

    shipped = nself("deploy", "staging", cwd=folder)
    assert shipped.code == 0, shipped.output
    replica = f"{name}-postgres-ro-1"
    assert psql(primary, "INSERT INTO notes VALUES (1)").returncode == 0
    deadline = time.monotonic() + 5
    while psql(replica, "SELECT count(*) FROM notes").stdout.strip() != "1":
        assert time.monotonic() < deadline, psql(replica, "SELECT 1").stderr
        time.sleep(0.1)
    refused = psql(replica, "INSERT INTO notes VALUES (2)")
    assert "read-only transaction" in refused.stderr
    [row] = listing(nself, folder)
    assert row["state"] == "streaming" and row["slot_active"] is True

    removed = nself("db", "replica", "remove", "ro", "--env", "staging", cwd=folder)
    assert removed.code == 0, removed.output
    assert "dropped the replication slot nself_replica_ro" in removed.out
    assert "removed the container of postgres-ro on the staging server" in removed.out
    assert "removed its data volume" in removed.out
    assert containers(name, "postgres-ro") == ""  # gone before the next deploy
    assert "next: nself deploy staging" in removed.out
    slots = psql(primary, "SELECT count(*) FROM pg_replication_slots")
    assert slots.stdout.strip() == "0", slots.stderr
    assert "POSTGRES_REPLICAS" not in (folder / ".env.staging").read_text()
    assert nself("deploy", "staging", cwd=folder).code == 0
    assert containers(name, "postgres-ro") == ""
    assert listing(nself, folder) == []
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={name}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(volumes) == 1  # the primary's only

    # Added again under the same name once the primary has moved on (its old WAL
    # recycled): a fresh base backup, not the old copy resuming from WAL that is gone.
    for _ in range(3):
        assert psql(primary, "INSERT INTO notes SELECT generate_series(3, 1000)").returncode == 0
        assert psql(primary, "SELECT pg_switch_wal()").returncode == 0
        assert psql(primary, "CHECKPOINT").returncode == 0
    again = nself("db", "replica", "add", "ro", "--env", "staging", cwd=folder)
    assert again.code == 0, again.output
    assert nself("deploy", "staging", cwd=folder).code == 0
    assert psql(primary, "INSERT INTO notes VALUES (5000)").returncode == 0
    deadline = time.monotonic() + 10
    while psql(replica, "SELECT count(*) FROM notes WHERE n = 5000").stdout.strip() != "1":
        assert time.monotonic() < deadline, listing(nself, folder)
        time.sleep(0.2)
    [row] = listing(nself, folder)
    assert row["state"] == "streaming"
