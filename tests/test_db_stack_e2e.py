"""`nself db` against the started local stack (Postgres reached only through the runtime),
including point-in-time recovery of its data volume.

The postgres service runs the local stand-in image (PostgreSQL 17, official-image contract);
Hasura and Auth are disabled because their images cannot be obtained here. Nothing is
published: tools run inside the service, SQL goes to its address on the project network.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_helpers import standin_project

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]


def psql(nself, folder: Path, sql: str) -> str:  # type: ignore[no-untyped-def]
    """Run ``sql`` in the stack's database with psql; its output, unaligned."""
    r = nself("exec", "postgres", "--", "psql", "-U", "postgres", "-d", "nself", "-Atc", sql,
              cwd=folder)  # fmt: skip
    assert r.code == 0, r.output
    return r.out.strip()


@pytest.fixture
def stack(tmp_path: Path, nself, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NSELF_DB_URL", raising=False)
    with standin_project(nself, tmp_path, "nselfdb", BACKUP_SCHEDULE='"0 3 * * *"') as folder:
        # the seed's own flow: a configured schedule is part of the stack, so a plain
        # `nself start` runs the scheduler (it once needed `--all`)
        assert nself("build", cwd=folder).code == 0
        started = nself("start", "--timeout", "120", cwd=folder)
        assert started.code == 0, started.output
        yield folder


def test_db_commands_on_the_running_stack(stack: Path, nself) -> None:  # type: ignore[no-untyped-def]
    folder = stack
    # a plain `nself start` ran the scheduler with the rest
    rows = json.loads(nself("status", "--json", cwd=folder).out)
    states = {r["service"]: r["state"] for r in rows}
    assert states["db-backup"] == "running", states
    r = nself("db", "migrate", "create", "notes", cwd=folder)
    assert r.code == 0, r.output
    up = next((folder / "migrations").glob("*_notes")) / "up.sql"
    up.write_text("CREATE TABLE notes (id serial PRIMARY KEY, body text);\n")
    (up.parent / "down.sql").write_text("DROP TABLE notes;\n")
    r = nself("db", "migrate", "up", cwd=folder)
    assert r.code == 0, r.output
    (folder / "seeds" / "01_notes.sql").write_text(
        "INSERT INTO notes (body) SELECT 'n' || g FROM generate_series(1, 500) g;\n"
    )
    r = nself("db", "seed", cwd=folder)
    assert r.code == 0, r.output
    r = nself("db", "migrate", "status", "--json", cwd=folder)
    assert r.code == 0, r.output
    assert json.loads(r.out)["migrations"][0]["state"] == "applied"

    r = nself("db", "backup", "--json", cwd=folder)
    assert r.code == 0, r.output
    manifest = json.loads(r.out[r.out.index("{") :])
    assert manifest["postgres_version"].startswith("17")
    assert manifest["tables"]["public.notes"] == 500
    name = manifest["name"]
    r = nself("db", "backup", "verify", name, cwd=folder)
    assert r.code == 0, r.output

    psql(nself, folder, "DELETE FROM notes WHERE id > 10")
    r = nself("db", "restore", name, cwd=folder)
    assert r.code == 0, r.output
    assert "is kept as nself__pre_restore_" in r.out  # the previous database, named
    assert psql(nself, folder, "SELECT count(*) FROM notes") == "500"
    # the dump copied into the service for pg_restore is gone
    r = nself("exec", "postgres", "--", "sh", "-c", "ls -A /tmp/nself-stage", cwd=folder)
    assert r.out.strip() == "", r.output
    r = nself("db", "migrate", "verify", cwd=folder)
    assert r.code == 0, r.output

    # the in-stack scheduler writes backups nself verifies and restores like its own
    r = nself("exec", "db-backup", "--", "sh", "/nself/backup.sh", "now", cwd=folder)
    assert r.code == 0, r.output
    scheduled = sorted((folder / "backups").glob("*-scheduled.dump"))
    assert len(scheduled) == 1
    assert (folder / "backups" / f"{scheduled[0].name}.json").stat().st_mode & 0o777 == 0o600
    r = nself("db", "backup", "list", cwd=folder)
    assert scheduled[0].name in r.out
    r = nself("db", "backup", "verify", scheduled[0].name, cwd=folder)
    assert r.code == 0, r.output
    assert "rows match" in r.out
    manifest = json.loads((folder / "backups" / f"{scheduled[0].name}.json").read_text())
    assert manifest["project"] == folder.name  # whose backup it is
    assert manifest["system_identifier"].isdigit()
    r = nself("db", "restore", scheduled[0].name, cwd=folder)  # this project's: no flag
    assert r.code == 0, r.output
    r = nself("db", "backup", "prune", "--yes", cwd=folder)  # drops the kept databases
    assert r.code == 0 and "dropped database nself__pre_restore_" in r.out, r.output

    point_in_time_recovery(folder, nself)


def test_a_server_newer_than_this_machines_tools_is_named_with_the_fix(
    stack: Path, nself, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A production backup through NSELF_DB_URL runs this machine's pg_dump (PostgreSQL 15
    here) against the stand-in's PostgreSQL 17: the error says so and names the setting
    that points at the right client tools."""
    import subprocess

    container = f"{stack.name}-postgres-1"
    address = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
         container],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    computed = dict(
        line.split("=", 1)
        for line in (stack / ".env.computed").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    password = computed["POSTGRES_PASSWORD"].strip("'\"")
    monkeypatch.setenv("NSELF_DB_URL", f"postgres://postgres:{password}@{address}:5432/nself")
    monkeypatch.delenv("NSELF_PG_BINDIR", raising=False)
    r = nself("db", "backup", "--env", "prod", cwd=stack)
    assert r.code == 1, r.output
    assert "server version mismatch (the server is PostgreSQL 17" in r.err, r.output
    assert "NSELF_PG_BINDIR=/usr/lib/postgresql/17/bin" in r.err, r.output
    assert "Traceback" not in r.output


def point_in_time_recovery(folder: Path, nself) -> None:  # type: ignore[no-untyped-def]
    """PITR of the stack: archiving on, base backup, write, note, write, drop, recover."""
    import time
    from datetime import UTC, datetime

    r = nself("db", "pitr", "enable", cwd=folder)
    assert r.code == 0, r.output
    psql(nself, folder, "CREATE TABLE ledger (id int, note text); CREATE TABLE keep (id int)")
    r = nself("db", "pitr", "backup", cwd=folder)
    assert r.code == 0, r.output
    psql(
        nself,
        folder,
        "INSERT INTO ledger SELECT g, 'first' FROM generate_series(1, 100) g;"
        " INSERT INTO keep VALUES (1)",
    )
    time.sleep(1.2)
    noted = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    time.sleep(1.2)
    psql(
        nself,
        folder,
        "INSERT INTO ledger SELECT g, 'later' FROM generate_series(101, 150) g; DROP TABLE keep",
    )
    r = nself("db", "pitr", "--target", noted, "--yes", cwd=folder)
    assert r.code == 0, r.output
    notes = psql(nself, folder, "SELECT note || ':' || count(*) FROM ledger GROUP BY note")
    assert notes == "first:100"
    assert psql(nself, folder, "SELECT count(*) FROM keep") == "1"
    assert psql(nself, folder, "SELECT pg_is_in_recovery()") == "f"
    pitr_retention(folder, nself)


def pitr_retention(folder: Path, nself) -> None:  # type: ignore[no-untyped-def]
    """`nself db pitr prune` on the stack: the archive lives in the postgres data volume
    and is listed and pruned inside the postgres service."""
    from datetime import datetime, timedelta

    def archive() -> set[str]:
        r = nself(
            "exec", "postgres", "--", "ls", "/var/lib/postgresql/data/wal-archive", cwd=folder
        )
        assert r.code == 0, r.output
        return set(r.out.split())

    r = nself("db", "pitr", "backup", cwd=folder)  # a second base backup, after the recovery
    assert r.code == 0, r.output
    manifests = sorted((folder / "backups" / "pitr").glob("base-*.tar.json"))
    assert len(manifests) == 2
    olds = []
    for manifest, days in zip(manifests, (10, 8), strict=True):  # both before the window
        data = json.loads(manifest.read_text())
        for key in ("start", "end"):
            data[key] = (datetime.fromisoformat(data[key]) - timedelta(days=days)).isoformat()
        manifest.write_text(json.dumps(data))
        olds.append(data)
    first, second = olds
    assert second["timeline"] == 2  # taken on the timeline the recovery started

    before = archive()
    r = nself("db", "pitr", "prune", "--json", cwd=folder)  # PITR_RETENTION_DAYS: 7
    assert r.code == 0, r.output
    plan = json.loads(r.out)
    assert plan["delete"]["base_backups"] == [first["name"]]
    assert plan["keep"]["wal_from"] == second["start_wal"]
    assert archive() == before
    r = nself("db", "pitr", "prune", "--yes", cwd=folder)
    assert r.code == 0, r.output
    after = archive()
    gone = before - after
    assert len(gone) == plan["delete"]["wal"]["count"] >= 1
    assert all(n[8:24] < second["start_wal"][8:] for n in gone)
    assert second["start_wal"] in after and "00000002.history" in after
    assert [m.exists() for m in manifests] == [False, True]
    r = nself("db", "pitr", "status", "--json", cwd=folder)
    assert r.code == 0, r.output
    assert json.loads(r.out)["retention"]["prune"]["delete"]["wal"]["count"] == 0


def test_a_recovery_waits_for_the_helper_a_killed_nself_left_running() -> None:
    """Killing nself does not stop the helper container that was changing the data volume
    (`docker run` is only its client): the next step on the same volume waits for it."""
    import subprocess
    import time

    from docker_helpers import standin
    from nself_builtins.database.pitr import HELPER_LABEL, StackCluster

    label = f"{HELPER_LABEL}=test{uuid.uuid4().hex[:8]}"
    argv = ["docker", "run", "-d", "--rm", "--network", "none", "--label", label]
    argv += ["--entrypoint", "sh", standin("postgres"), "-c", "sleep 3"]
    left = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    try:
        started = time.monotonic()
        StackCluster._wait_for_helpers(label)
        assert time.monotonic() - started > 1.5  # it waited for the helper
        running = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label={label}"], capture_output=True, text=True
        )
        assert running.stdout.strip() == ""
    finally:
        subprocess.run(["docker", "rm", "-f", left], capture_output=True, check=False)
