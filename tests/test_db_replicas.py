"""Read replicas on the real engine (issue #15): `nself db replica add|list|remove`.

The stack runs the postgres stand-in (PostgreSQL 17 built from Debian's packages, the
official image's contract); each replica is a second container of that image started by
nself's replica script, streaming from the primary through its own slot. Hasura and Auth
are off: their images cannot be obtained here. Nothing is published: SQL goes to the
containers' addresses on the project network.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import docker, standin, standin_project
from nself_sdk.testing import Result, set_env
from test_runtime_e2e import project_objects

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]


@pytest.fixture
def stack(tmp_path: Path, nself: Run, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("NSELF_DB_URL", raising=False)
    with standin_project(nself, tmp_path, "nselfrepl") as folder:
        started = nself("start", "postgres", "--timeout", "120", cwd=folder)
        assert started.code == 0, started.output
        yield folder


def sql(nself: Run, folder: Path, service: str, statement: str) -> Result:
    return nself(
        "exec", service, "--", "psql", "-X", "-U", "postgres", "-d", "nself", "-Atc", statement,
        cwd=folder,
    )  # fmt: skip


def slots(nself: Run, folder: Path) -> list[str]:
    out = sql(nself, folder, "postgres", "SELECT slot_name FROM pg_replication_slots")
    assert out.code == 0, out.output
    return out.out.split()


def seen_within(nself: Run, folder: Path, value: int, seconds: float) -> float:
    """How long the replica took to show ``value`` in notes (fails after ``seconds``)."""
    began = time.monotonic()
    while True:
        got = sql(
            nself, folder, "postgres-replica1", f"SELECT count(*) FROM notes WHERE n = {value}"
        )
        if got.code == 0 and got.out.strip() == "1":
            return time.monotonic() - began
        assert time.monotonic() - began < seconds, f"{value} not on the replica: {got.output}"
        time.sleep(0.1)


def listing(nself: Run, folder: Path) -> list[dict[str, object]]:
    out = nself("db", "replica", "list", "--json", cwd=folder)
    assert out.code == 0, out.output
    rows: list[dict[str, object]] = json.loads(out.out)
    return rows


def test_a_replica_streams_refuses_writes_survives_restarts_and_leaves_no_slot(
    stack: Path, nself: Run
) -> None:
    folder = stack
    assert sql(nself, folder, "postgres", "CREATE TABLE notes (n int)").code == 0
    added = nself("db", "replica", "add", cwd=folder)
    assert added.code == 0, added.output
    assert "replica replica1: service postgres-replica1, kept in .env.local" in added.out
    assert "created the replication slot nself_replica_replica1" in added.out
    assert "POSTGRES_REPLICAS=replica1" in (folder / ".env.local").read_text()
    assert slots(nself, folder) == ["nself_replica_replica1"]

    # A row written on the primary is on the replica within a second or two.
    assert sql(nself, folder, "postgres", "INSERT INTO notes VALUES (1)").code == 0
    assert seen_within(nself, folder, 1, 2.0) < 2.0
    # The replica refuses writes.
    refused = sql(nself, folder, "postgres-replica1", "INSERT INTO notes VALUES (2)")
    assert refused.code != 0
    assert "read-only transaction" in refused.output

    [row] = listing(nself, folder)
    assert row["name"] == "replica1" and row["state"] == "streaming"
    assert row["lag_bytes"] == 0 and row["lag_seconds"] == 0.0
    assert row["slot_active"] is True and row["container"] == "healthy"

    # It survives a restart of itself, and one of the primary.
    restarted = nself("restart", "postgres-replica1", cwd=folder)
    assert restarted.code == 0, restarted.output
    assert sql(nself, folder, "postgres", "INSERT INTO notes VALUES (3)").code == 0
    seen_within(nself, folder, 3, 10.0)
    restarted = nself("restart", "postgres", cwd=folder)
    assert restarted.code == 0, restarted.output
    assert sql(nself, folder, "postgres", "INSERT INTO notes VALUES (4)").code == 0
    seen_within(nself, folder, 4, 15.0)  # it reconnects by itself (5 s retry interval)
    deadline = time.monotonic() + 15
    while listing(nself, folder)[0]["state"] != "streaming":
        assert time.monotonic() < deadline, listing(nself, folder)
        time.sleep(0.5)

    # Stopped, its slot keeps WAL: list shows the lag, doctor warns.
    assert nself("stop", "postgres-replica1", cwd=folder).code == 0
    fill = "INSERT INTO notes SELECT g FROM generate_series(5, 50000) g"
    filled = sql(nself, folder, "postgres", fill)
    assert filled.code == 0, filled.output
    [row] = listing(nself, folder)
    assert row["state"] == "disconnected" and row["slot_active"] is False
    assert isinstance(row["retained_bytes"], int) and row["retained_bytes"] > 1_000_000
    doctor = nself("doctor", "--check", "replication", cwd=folder)
    assert "replica replica1 is not connected; its slot nself_replica_replica1 keeps" in doctor.out
    assert "nself db replica remove replica1" in doctor.out

    # Started again, it catches up through its slot.
    assert nself("start", "postgres-replica1", cwd=folder).code == 0
    seen_within(nself, folder, 50000, 30.0)
    [row] = listing(nself, folder)
    assert row["state"] == "streaming"

    # Removed: no slot, no container, no data volume; the env file no longer lists it.
    removed = nself("db", "replica", "remove", "replica1", cwd=folder)
    assert removed.code == 0, removed.output
    assert "dropped the replication slot nself_replica_replica1" in removed.out
    assert slots(nself, folder) == []
    assert listing(nself, folder) == []
    assert "POSTGRES_REPLICAS" not in (folder / ".env.local").read_text()
    volumes = project_objects(folder.name)["volumes"]
    assert len(volumes) == 1  # the primary's only
    service = "label=com.docker.compose.service=postgres-replica1"
    owner = f"label=com.docker.compose.project={folder.name}"
    assert docker("ps", "-aq", "--filter", service, "--filter", owner).stdout == ""
    # Added again under the same name: a fresh base backup, streaming at once.
    again = nself("db", "replica", "add", "replica1", cwd=folder)
    assert again.code == 0, again.output
    count = sql(nself, folder, "postgres-replica1", "SELECT count(*) FROM notes")
    assert count.out.strip() == "49999"  # 1, 3, 4 and 5..50000


def test_bad_input_is_one_line_with_a_hint(stack: Path, nself: Run) -> None:
    folder = stack
    assert nself("db", "replica", "add", "first", "--no-start", cwd=folder).code == 0
    taken = nself("db", "replica", "add", "first", cwd=folder)
    assert taken.code == 2
    assert "error: a replica named first exists already" in taken.err
    assert "hint:" in taken.err and "Traceback" not in taken.err
    bad = nself("db", "replica", "add", "Not_A_Name", cwd=folder)
    assert bad.code == 2 and "is not a replica name" in bad.err
    unknown = nself("db", "replica", "remove", "nope", cwd=folder)
    assert unknown.code == 2 and "there is no replica named nope" in unknown.err
    cloud = nself("db", "replica", "add", "--region", "fsn1", "--type", "CX22", cwd=folder)
    assert cloud.code == 2 and "nself does not create cloud servers" in cloud.err
    # Nothing half-done: the refused commands changed neither the env file nor the slots.
    assert (folder / ".env.local").read_text().count("POSTGRES_REPLICAS=first") == 1
    assert slots(nself, folder) == ["nself_replica_first"]
    # An add interrupted after the setting was written (no slot yet) is finished by
    # running it again.
    set_env(folder, ".env.local", POSTGRES_REPLICAS="first,second")
    finished = nself("db", "replica", "add", "second", cwd=folder)
    assert finished.code == 0, finished.output
    assert sorted(slots(nself, folder)) == ["nself_replica_first", "nself_replica_second"]
    assert sql(nself, folder, "postgres-second", "SELECT pg_is_in_recovery()").out.strip() == "t"
    # A replica that never started is removed with its slot.
    assert nself("db", "replica", "remove", "first", cwd=folder).code == 0
    assert slots(nself, folder) == ["nself_replica_second"]

    # Rotating POSTGRES_PASSWORD changes the replication role's (derived) password inside
    # the primary and restarts the replica with it: it streams on, also after the
    # primary's next restart (a new connection, with the new password).
    rotated = nself("secrets", "rotate", "POSTGRES_PASSWORD", "--yes", cwd=folder)
    assert rotated.code == 0, rotated.output
    assert "postgres-second" in rotated.output
    assert nself("restart", "postgres", cwd=folder).code == 0
    assert sql(nself, folder, "postgres", "CREATE TABLE after_rotation (n int)").code == 0
    deadline = time.monotonic() + 20
    while sql(nself, folder, "postgres-second", "SELECT 1 FROM after_rotation").code != 0:
        assert time.monotonic() < deadline, nself("logs", "postgres-second", cwd=folder).out
        time.sleep(0.2)
    [row] = listing(nself, folder)
    assert row["state"] == "streaming"


def test_replicas_in_the_env_files_come_up_with_a_new_stack(
    tmp_path: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Builds regenerate replicas: on a fresh data volume the primary's init script lets
    them in, and `nself start` brings primary and replica up together."""
    monkeypatch.delenv("NSELF_DB_URL", raising=False)
    with standin_project(nself, tmp_path, "nselfrepl", POSTGRES_REPLICAS="r1") as folder:
        started = nself("start", "--timeout", "180", cwd=folder)
        assert started.code == 0, started.output
        assert sql(nself, folder, "postgres", "CREATE TABLE notes (n int)").code == 0
        assert sql(nself, folder, "postgres", "INSERT INTO notes VALUES (7)").code == 0
        deadline = time.monotonic() + 5
        while sql(nself, folder, "postgres-r1", "SELECT count(*) FROM notes").out.strip() != "1":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        [row] = listing(nself, folder)
        assert row["name"] == "r1" and row["state"] == "streaming"
        assert slots(nself, folder) == ["nself_replica_r1"]


def test_a_remove_the_build_refuses_leaves_the_replica_streaming(stack: Path, nself: Run) -> None:
    """A service reads ${DATABASE_REPLICA_URL}: removing the only replica is refused by the
    build, before anything is stopped or dropped (it used to stop the replica and drop its
    slot first, so the replica, still configured, came back unable to stream and served
    ever older rows)."""
    folder = stack
    assert sql(nself, folder, "postgres", "CREATE TABLE notes (n int)").code == 0
    added = nself("db", "replica", "add", cwd=folder)
    assert added.code == 0, added.output
    set_env(folder, ".env.local", CS_1_NAME="reader", CS_1_IMAGE=standin("http"),
            CS_1_PORT="8080", CS_1_ENV_READ_URL="${DATABASE_REPLICA_URL}")  # fmt: skip
    refused = nself("db", "replica", "remove", "replica1", cwd=folder)
    assert refused.code != 0
    assert "DATABASE_REPLICA_URL" in refused.err and "Traceback" not in refused.err
    assert "stopped" not in refused.out and "dropped" not in refused.out, refused.out
    assert "POSTGRES_REPLICAS=replica1" in (folder / ".env.local").read_text()
    assert slots(nself, folder) == ["nself_replica_replica1"]
    [row] = listing(nself, folder)
    assert row["state"] == "streaming" and row["container"] == "healthy", row
    assert sql(nself, folder, "postgres", "INSERT INTO notes VALUES (1)").code == 0
    seen_within(nself, folder, 1, 5.0)


def test_removing_a_replica_names_the_services_still_reading_it(stack: Path, nself: Run) -> None:
    """A running service started with ${DATABASE_REPLICA_URL} keeps the removed replica's
    URL until it is made anew: remove says so, and `nself start` gives it the next one."""
    folder = stack
    for name in ("replica1", "replica2"):
        added = nself("db", "replica", "add", name, "--no-start", cwd=folder)
        assert added.code == 0, added.output
    set_env(folder, ".env.local", CS_1_NAME="reader", CS_1_IMAGE=standin("http"),
            CS_1_PORT="8080", CS_1_ENV_READ_URL="${DATABASE_REPLICA_URL}")  # fmt: skip
    started = nself("start", "reader", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output

    def read_url() -> str:
        return nself("exec", "reader", "--", "sh", "-c", 'echo "$READ_URL"', cwd=folder).out

    assert "@postgres-replica1:5432/" in read_url()
    removed = nself("db", "replica", "remove", "replica1", cwd=folder)
    assert removed.code == 0, removed.output
    assert "reader still uses the replicas' old URLs, replica1's among them" in removed.err
    assert "hint: make them anew with the new ones: nself start" in removed.err
    assert nself("start", "--timeout", "120", cwd=folder).code == 0
    assert "@postgres-replica2:5432/" in read_url()


def test_a_replica_added_again_over_a_data_copy_left_behind_starts_afresh(
    stack: Path, nself: Run
) -> None:
    """A remove cut short after the slot was dropped leaves the replica's data volume. An
    add under the same name makes a new slot, reserving WAL from now on, so that copy
    cannot resume (the primary recycled the WAL it needs): the add takes a new base
    backup instead of starting it, healthy and never streaming, on ever older rows."""
    folder = stack
    assert sql(nself, folder, "postgres", "CREATE TABLE notes (n int)").code == 0
    assert nself("db", "replica", "add", cwd=folder).code == 0
    # Cut short: stopped, slot dropped, taken out of the env file, its volume still there.
    assert nself("stop", "postgres-replica1", cwd=folder).code == 0
    drop = "SELECT pg_drop_replication_slot('nself_replica_replica1')"
    assert sql(nself, folder, "postgres", drop).code == 0
    env = folder / ".env.local"
    env.write_text(env.read_text().replace("POSTGRES_REPLICAS=replica1\n", ""))
    for n in range(4):  # the copy's WAL recycled on the primary
        churn = (f"INSERT INTO notes SELECT {n} FROM generate_series(1, 20000); "
                 "SELECT pg_switch_wal(); CHECKPOINT")  # fmt: skip
        assert sql(nself, folder, "postgres", churn).code == 0
    assert sql(nself, folder, "postgres", "INSERT INTO notes VALUES (-1)").code == 0

    again = nself("db", "replica", "add", "replica1", "--timeout", "120", cwd=folder)
    assert again.code == 0, again.output
    assert "its data volume" in again.out, again.out
    seen_within(nself, folder, -1, 20.0)
    [row] = listing(nself, folder)
    assert row["state"] == "streaming", row
