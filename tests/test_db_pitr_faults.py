"""Point-in-time recovery killed (SIGKILL) at each of its steps, on a real PostgreSQL 15
server whose data folder is on this machine: the next nself command finishes or undoes it.

``NSELF_TEST_KILL_AT`` makes nself kill itself right at the named step: after the server
stopped, right after the data folder was moved aside (the base backup not yet unpacked),
once the base backup is in place, and after the promotion (the settings not yet reset).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import test_db_pitr_timelines as timelines
from pg_cluster import Cluster
from test_db_pitr_timelines import noted, stamp
from test_db_restore_faults import cli

pytestmark = pytest.mark.postgres
cluster = timelines.cluster  # the fixture: an archiving cluster this machine's nself drives


def notes(c: Cluster) -> list[str]:
    return [r[0] for r in c.sql("SELECT note FROM ledger ORDER BY id", "shop")]


# step: (the next command, whether the recovery is undone (else finished))
STEPS = {
    "pitr-stopped": (("db", "migrate", "status"), True),
    "pitr-moved": (("doctor", "--check", "interrupted"), True),
    "pitr-replaced": (("db", "pitr", "status"), False),
    "pitr-promoted": (("db", "backup", "list"), False),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_recovery_killed_at_each_step_is_finished_or_undone(
    step: str, cluster: Cluster, project: Path
) -> None:
    cluster.sql("CREATE DATABASE shop")
    cluster.sql("CREATE TABLE ledger (id serial, note text)", "shop")
    assert cli(project, "db", "pitr", "backup").returncode == 0
    cluster.sql("INSERT INTO ledger (note) VALUES ('r1')", "shop")
    target = stamp(noted())
    cluster.sql("INSERT INTO ledger (note) VALUES ('r2')", "shop")

    r = cli(project, "db", "pitr", "--target", target, "--yes", NSELF_TEST_KILL_AT=step)
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr

    command, undone = STEPS[step]
    r = cli(project, *command)
    said = r.stdout + r.stderr
    assert "Traceback" not in said
    assert r.returncode == 0, said
    assert "interrupted point-in-time recovery" in said, said
    assert ("as before" if undone else "was finished") in said, said
    journal = project / "backups" / "pitr" / ".recovery.json"
    assert not journal.exists()
    assert notes(cluster) == (["r1", "r2"] if undone else ["r1"])  # reachable, right data
    assert cluster.sql("SELECT pg_is_in_recovery()") == [(False,)]
    if not undone:  # the recovery settings are gone, the previous data folder is kept
        auto = (cluster.data / "postgresql.auto.conf").read_text()
        assert "recovery_target" not in auto and "restore_command" not in auto, auto
        assert len(list(cluster.data.parent.glob("data.pre-pitr-*"))) == 1
    else:
        assert not list(cluster.data.parent.glob("data.pre-pitr-*"))
    # and nothing is left to settle: the next command says nothing about it
    r = cli(project, "db", "pitr", "status")
    assert r.returncode == 0 and "interrupted" not in r.stdout + r.stderr, r.stdout + r.stderr
