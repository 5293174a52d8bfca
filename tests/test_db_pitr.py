"""Point-in-time recovery on a real PostgreSQL 15 cluster of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nself_builtins.database.pitr import archive_command
from pg_cluster import Cluster, available

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not available():
        pytest.fail("PostgreSQL server binaries are missing (scripts/test installs them)")
    root = Path(tempfile.mkdtemp(prefix="nself-pitr-"))
    os.chmod(root, 0o755)
    c = Cluster(root)
    c.init(archive_command(str(c.archive)))
    c.start()
    try:
        yield c
    finally:
        c.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_archiver_never_overwrites_a_segment_with_other_content(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    segment = tmp_path / "000000010000000000000007"
    segment.write_bytes(b"A" * 1024)
    command = archive_command(str(archive)).replace("%p", str(segment)).replace("%f", segment.name)

    def run() -> int:
        return subprocess.run(["sh", "-c", command], check=False).returncode

    assert run() == 0 and (archive / segment.name).read_bytes() == b"A" * 1024
    assert run() == 0  # the same content again (a retry) is fine
    segment.write_bytes(b"B" * 1024)
    assert run() != 0  # different content under the same name is refused
    assert (archive / segment.name).read_bytes() == b"A" * 1024
    assert not list(archive.glob("*.part"))


def test_recover_to_a_noted_time(
    cluster: Cluster, project: Path, nself, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSELF_DB_URL", cluster.url("postgres"))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(cluster.bindir))
    monkeypatch.setenv("NSELF_PITR_DATA_DIR", str(cluster.data))
    monkeypatch.setenv("NSELF_PITR_ARCHIVE", str(cluster.archive))
    monkeypatch.setenv("NSELF_PG_OS_USER", "postgres")
    cluster.sql("CREATE DATABASE shop")
    cluster.sql("CREATE TABLE ledger (id int, note text); CREATE TABLE keep (id int)", "shop")

    r = nself("db", "pitr", "--target", "2020-01-01 00:00:00 UTC", "--yes", cwd=project)
    assert r.code == 1 and "no base backup" in r.err
    r = nself("db", "pitr", "backup", cwd=project)
    assert r.code == 0, r.output

    cluster.sql("INSERT INTO ledger SELECT g, 'first' FROM generate_series(1, 100) g", "shop")
    cluster.sql("INSERT INTO keep VALUES (1)", "shop")
    time.sleep(1.2)
    noted = datetime.now(UTC)
    time.sleep(1.2)
    cluster.sql("INSERT INTO ledger SELECT g, 'later' FROM generate_series(101, 150) g", "shop")
    cluster.sql("DROP TABLE keep", "shop")

    stamp = noted.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    r = nself("db", "pitr", "--target", stamp, "--dry-run", cwd=project)
    assert r.code == 0, r.output
    assert "recoverable window" in r.out and "dry run" in r.out
    assert cluster.sql("SELECT count(*) FROM ledger", "shop") == [(150,)]

    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S UTC")
    r = nself("db", "pitr", "--target", future, "--yes", cwd=project)
    assert r.code == 1 and "outside the recoverable window" in r.err
    r = nself("db", "pitr", "--target", "2020-01-01 00:00:00 UTC", "--yes", cwd=project)
    assert r.code == 1 and "outside the recoverable window" in r.err
    r = nself("db", "pitr", "--target", "yesterday", "--yes", cwd=project)
    assert r.code == 2 and "cannot read the time" in r.err

    r = nself("db", "pitr", "--target", stamp, "--yes", cwd=project)
    assert r.code == 0, r.output
    assert cluster.sql("SELECT note, count(*) FROM ledger GROUP BY 1", "shop") == [("first", 100)]
    assert cluster.sql("SELECT count(*) FROM keep", "shop") == [(1,)]  # the dropped table is back
    assert cluster.sql("SELECT pg_is_in_recovery()") == [(False,)]
    # the server keeps archiving on its new timeline, and the old data folder was kept
    cluster.sql("INSERT INTO keep VALUES (2)", "shop")
    kept = list(cluster.data.parent.glob("data.pre-pitr-*"))
    assert len(kept) == 1
    settings = cluster.sql(
        "SELECT count(*) FROM pg_file_settings WHERE name LIKE 'recovery_target%'"
    )
    assert settings == [(0,)]


def test_prod_pitr_needs_confirm(project: Path, nself) -> None:
    r = nself("db", "pitr", "--target", "2026-05-01 14:30:00 UTC", "--env", "prod", cwd=project)
    assert r.code == 2 and "needs --confirm" in r.err
