"""`nself db backup push/pull`: copies of backups in S3.

MinIO cannot be obtained on this machine (no container registry), so the S3 endpoint is
moto's S3 server — a stand-in that speaks the S3 HTTP API, started on a free local port.
The backups themselves come from the real PostgreSQL 15 test cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import pg_cluster
from nself_sdk.testing import set_env
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


# -- the in-stack scheduler's own S3 copy (shell + curl), checked by a signing server -------


@pytest.fixture(scope="module")
def signed_s3() -> Iterator[tuple[str, str, str]]:
    """moto's S3 server with signature checks on: after the three unsigned IAM calls that
    create a user, its policy and its key, every request must carry a valid SigV4."""
    import boto3

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.1)
        anonymous = {"aws_access_key_id": "x", "aws_secret_access_key": "y"}
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", **anonymous)
        iam.create_user(UserName="backups")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="backups", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="backups")["AccessKey"]
        boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        ).create_bucket(Bucket="scheduled-copies")
        yield url, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        server.terminate()
        server.wait(10)


def test_scheduled_backups_copy_themselves_to_s3(
    project: Path,
    nself,  # type: ignore[no-untyped-def]
    pg: Cluster,
    db: str,
    signed_s3: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, key_id, secret = signed_s3
    monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(pg.bindir))
    s3 = {
        "BACKUP_S3_BUCKET": "scheduled-copies",
        "BACKUP_S3_ENDPOINT": url,
        "BACKUP_S3_ACCESS_KEY": key_id,
        "BACKUP_S3_SECRET_KEY": secret,
    }
    set_env(project, ".env.local", BACKUP_SCHEDULE='"0 2 * * *"', **s3)
    pg.sql("CREATE TABLE notes (id int PRIMARY KEY); INSERT INTO notes VALUES (1), (2)", db)
    r = nself("build", cwd=project)
    assert r.code == 0, r.output
    service = yaml.safe_load((project / "docker-compose.yml").read_text())["services"]["db-backup"]
    assert service["environment"]["BACKUP_S3_SECRET_KEY"] == "${BACKUP_S3_SECRET_KEY}"
    assert service["environment"]["BACKUP_S3_PREFIX"] == "demo"
    r = nself("db", "backup", "--json", cwd=project)
    name = json.loads(r.out[r.out.index("{") :])["name"]

    # The generated script, run as the db-backup service runs it (its env, its folder).
    def upload(**override: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], "BACKUP_S3_PREFIX": "demo", **s3, **override}
        env["NSELF_BACKUP_DIR"] = str(project / "backups")
        script = project / "db-backup" / "backup.sh"
        return subprocess.run(
            ["sh", str(script), "upload", name], env=env, capture_output=True, text=True
        )

    wrong = upload(BACKUP_S3_SECRET_KEY="not-the-secret")
    assert wrong.returncode == 1 and f"S3: upload of {name} failed" in wrong.stdout
    assert "not-the-secret" not in wrong.stdout + wrong.stderr
    done = upload()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"copied {name} to s3://scheduled-copies/demo/" in done.stdout

    # What the script uploaded is what `nself db backup pull` (boto3) reads and checks.
    for path in (project / "backups").glob(f"{name}*"):
        path.unlink()
    r = nself("db", "backup", "pull", name, cwd=project)
    assert r.code == 0, r.output
    pg.sql("DELETE FROM notes", db)
    r = nself("db", "restore", name, "--no-safety-backup", cwd=project)
    assert r.code == 0, r.output
    assert pg.sql("SELECT count(*) FROM notes", db) == [(2,)]
