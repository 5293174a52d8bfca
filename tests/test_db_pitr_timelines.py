"""Point-in-time recovery across timelines and on an idle server (real PostgreSQL 15)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pg_cluster import Cluster, archiving_cluster

pytestmark = pytest.mark.postgres


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    with archiving_cluster("nself-pitr-tl-") as c:
        monkeypatch.setenv("NSELF_DB_URL", c.url("postgres"))
        monkeypatch.setenv("NSELF_PG_BINDIR", str(c.bindir))
        monkeypatch.setenv("NSELF_PITR_DATA_DIR", str(c.data))
        monkeypatch.setenv("NSELF_PITR_ARCHIVE", str(c.archive))
        monkeypatch.setenv("NSELF_PG_OS_USER", "postgres")
        yield c


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def noted() -> datetime:
    time.sleep(1.1)
    when = datetime.now(UTC)
    time.sleep(1.1)
    return when


STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC"
WINDOW = re.compile(STAMP + r" \.\. " + STAMP)


def never_inverted(text: str) -> int:
    """Every window ``A .. B`` that `pitr status` prints ends at or after its start."""
    found = WINDOW.findall(text)
    for start, end in found:
        assert end >= start, f"a window ends before it starts: {start} .. {end}\n{text}"
    return len(found)


def notes(c: Cluster) -> list[str]:
    return [r[0] for r in c.sql("SELECT note FROM ledger ORDER BY id", "shop")]


def test_recovery_after_a_branch_before_a_later_base_backup(
    cluster: Cluster, project: Path, nself
) -> None:
    """Base A, rows, noted t1, rows, base B, rows; recover to t1 (from A: timeline 2).
    Recovering later on timeline 2 must start from A again: B lies on the part of
    timeline 1 this history left. Choosing by wall-clock time picked B and failed."""
    cluster.sql("CREATE DATABASE shop")
    cluster.sql("CREATE TABLE ledger (id serial, note text)", "shop")
    assert nself("db", "pitr", "backup", cwd=project).code == 0  # A
    cluster.sql("INSERT INTO ledger (note) VALUES ('r1')", "shop")
    t1 = noted()
    cluster.sql("INSERT INTO ledger (note) VALUES ('r2')", "shop")
    time.sleep(1.1)
    assert nself("db", "pitr", "backup", cwd=project).code == 0  # B, timeline 1
    cluster.sql("INSERT INTO ledger (note) VALUES ('r3')", "shop")

    r = nself("db", "pitr", "--target", stamp(t1), "--yes", cwd=project)
    assert r.code == 0, r.output
    assert notes(cluster) == ["r1"]
    time.sleep(1.1)
    cluster.sql("INSERT INTO ledger (note) VALUES ('r4')", "shop")  # timeline 2
    t2 = noted()
    cluster.sql("INSERT INTO ledger (note) VALUES ('r5')", "shop")

    r = nself("db", "pitr", "status", "--json", cwd=project)
    assert r.code == 0, r.output
    status = json.loads(r.out)
    assert [t["timeline"] for t in status["timelines"]] == [1, 2]
    assert status["timelines"][0]["branched_off"] is True
    assert datetime.fromisoformat(status["newest"]) >= datetime.fromisoformat(status["earliest"])
    assert any("after the point this history branched off" in x for x in status["left_out"])
    shown = nself("db", "pitr", "status", cwd=project)
    assert shown.code == 0 and never_inverted(shown.out) >= 2, shown.out  # whole, per timeline

    # a point in the gap (timeline 1 after the branch, before timeline 2 began) is refused
    gap = t1 + timedelta(seconds=1.5)
    r = nself("db", "pitr", "--target", stamp(gap), "--dry-run", cwd=project)
    assert r.code == 1 and "has no data" in r.err, r.output

    r = nself("db", "pitr", "--target", stamp(t2), "--yes", cwd=project)
    assert r.code == 0, r.output
    a_name = sorted((project / "backups" / "pitr").glob("base-*.tar"))[0].name
    assert f"base backup {a_name}" in r.out
    assert notes(cluster) == ["r1", "r4"]

    # a base backup on the current timeline is used for points after it
    time.sleep(1.1)
    assert nself("db", "pitr", "backup", cwd=project).code == 0  # C, timeline 3
    cluster.sql("INSERT INTO ledger (note) VALUES ('r6')", "shop")
    t3 = noted()
    r = nself("db", "pitr", "--target", stamp(t3), "--yes", cwd=project)
    assert r.code == 0, r.output
    c_name = sorted((project / "backups" / "pitr").glob("base-*.tar"))[-1].name
    assert f"base backup {c_name}" in r.out
    assert notes(cluster) == ["r1", "r4", "r6"]
    # recoveries keep one data folder aside, not one per recovery
    assert len(list(cluster.data.parent.glob("data.pre-pitr-*"))) == 1


def test_pitr_commands_on_an_idle_server_return_within_seconds(
    cluster: Cluster, project: Path, nself
) -> None:
    cluster.sql("CREATE DATABASE shop")
    cluster.sql("CREATE TABLE ledger (id serial, note text)", "shop")
    cluster.sql("INSERT INTO ledger (note) VALUES ('only')", "shop")
    committed = datetime.now(UTC)
    # several closed segments after the last commit: WAL without any commit in it
    for _ in range(8):
        cluster.sql("SELECT pg_logical_emit_message(false, 'test', 'no commit')")
        cluster.sql("SELECT pg_switch_wal()")
    time.sleep(1.1)
    for args in (("pitr", "backup"), ("pitr", "status", "--json"), ("pitr", "backup")):
        started = time.monotonic()
        r = nself("db", *args, cwd=project)
        assert r.code == 0, r.output
        assert time.monotonic() - started < 15, args
    status = json.loads(nself("db", "pitr", "status", "--json", cwd=project).out)
    earliest = datetime.fromisoformat(status["earliest"])
    newest = datetime.fromisoformat(status["newest"])
    assert newest >= earliest  # never inverted: nothing was committed after the backups
    shown = nself("db", "pitr", "status", cwd=project)
    assert shown.code == 0 and never_inverted(shown.out) == 1, shown.out
    last = datetime.fromisoformat(status["timelines"][-1]["last_commit"])
    assert abs((last - committed).total_seconds()) < 5  # found beyond the newest segments
    # a recovery to the newest point on the idle server: the plan comes at once
    started = time.monotonic()
    r = nself("db", "pitr", "--target", stamp(newest), "--dry-run", cwd=project)
    assert r.code == 0, r.output
    assert time.monotonic() - started < 15
    assert "to its end" in r.out
    r = nself("db", "pitr", "--target", stamp(newest), "--yes", cwd=project)
    assert r.code == 0, r.output
    assert notes(cluster) == ["only"]


def test_a_failing_archive_command_is_reported_within_seconds(
    cluster: Cluster, project: Path, nself
) -> None:
    cluster.sql("CREATE DATABASE shop")
    assert nself("db", "pitr", "backup", cwd=project).code == 0
    cluster.archive.chmod(0o555)  # the server's user can no longer write into it
    try:
        cluster.sql("CREATE TABLE ledger (id int)", "shop")
        started = time.monotonic()
        r = nself("db", "pitr", "--target", stamp(datetime.now(UTC)), "--dry-run", cwd=project)
        assert r.code == 1 and "the archive command fails for WAL segment" in r.err, r.output
        assert time.monotonic() - started < 20
    finally:
        cluster.archive.chmod(0o755)
