"""`nself db backup push/pull`: copies of backups in S3.

MinIO cannot be obtained on this machine (no container registry), so the S3 endpoint is
moto's S3 server — a stand-in that speaks the S3 HTTP API, started on a free local port.
The backups themselves come from the real PostgreSQL 15 test cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import pg_cluster
from conftest import set_env
from pg_cluster import Cluster, free_port

pytestmark = pytest.mark.postgres
pg, db = pg_cluster.pg, pg_cluster.db


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def target(project: Path, pg: Cluster, db: str, s3: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    import boto3

    monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(pg.bindir))
    set_env(
        project,
        ".env.local",
        BACKUP_S3_BUCKET="nself-backups",
        BACKUP_S3_ENDPOINT=s3,
        BACKUP_S3_ACCESS_KEY="testing",
        BACKUP_S3_SECRET_KEY="testing-secret-key",
    )
    boto3.client(
        "s3",
        endpoint_url=s3,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing-secret-key",
    ).create_bucket(Bucket="nself-backups")
    pg.sql(
        "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 300)",
        db,
    )
    return project


def test_push_then_pull_then_restore(target: Path, nself, pg: Cluster, db: str) -> None:
    r = nself("db", "backup", "--json", cwd=target)
    assert r.code == 0, r.output
    name = json.loads(r.out[r.out.index("{") :])["name"]
    r = nself("db", "backup", "push", name, cwd=target)
    assert r.code == 0, r.output
    assert "3 files in s3://nself-backups/demo/" in r.out
    # lose the local copy, get it back from S3, restore it
    for path in (target / "backups").glob(f"{name}*"):
        path.unlink()
    r = nself("db", "backup", "pull", cwd=target)
    assert r.code == 0 and name in r.out
    r = nself("db", "backup", "pull", name, cwd=target)
    assert r.code == 0, r.output
    pg.sql("DELETE FROM items", db)
    r = nself("db", "restore", name, "--no-safety-backup", cwd=target)
    assert r.code == 0, r.output
    assert pg.sql("SELECT count(*) FROM items", db) == [(300,)]


def test_a_damaged_backup_is_not_pushed(target: Path, nself) -> None:
    r = nself("db", "backup", "--json", cwd=target)
    name = json.loads(r.out[r.out.index("{") :])["name"]
    dump = target / "backups" / name
    dump.write_bytes(dump.read_bytes()[:-10])
    r = nself("db", "backup", "push", name, cwd=target)
    assert r.code == 1 and "is damaged" in r.err


def test_wrong_credentials_give_one_clear_error(target: Path, nself) -> None:
    set_env(target, ".env.local", BACKUP_S3_BUCKET="no-such-bucket")
    r = nself("db", "backup", cwd=target)
    assert r.code == 0
    r = nself("db", "backup", "push", cwd=target)
    assert r.code == 1 and "S3 upload failed" in r.err and "Traceback" not in r.output
