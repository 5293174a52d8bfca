"""S3 through nginx on a port other than 443: presigned URLs work.

An S3 client signs the Host header as its URL has it, port included
(``storage.<domain>:8443``), and MinIO recomputes the signature from the Host it is
given. nginx's ``$host`` drops the port, so every request through a non-443 HTTPS port
(a laptop, a server with 443 taken) failed with SignatureDoesNotMatch. nginx passes the
Host header on as the client sent it.

Real engine, Compose v2, the nginx stand-in and the MinIO stand-in (which checks AWS
Signature V4 as MinIO does); the URLs are signed by botocore, a real S3 client.
"""

from __future__ import annotations

import http.client
import shlex
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from docker_helpers import standin, standin_stack
from nself_sdk.testing import Result
from test_runtime_e2e import DOMAIN

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]


@pytest.fixture
def storage_stack(tmp_path: Path, nself: Run) -> Iterator[tuple[Path, int]]:
    minio = standin("minio")
    with standin_stack(nself, tmp_path, "nselfs3", STORAGE_ENABLED="true", MINIO_IMAGE=minio) as s:
        yield s.folder, s.https


def computed(folder: Path) -> dict[str, str]:
    values = {}
    for line in (folder / ".env.computed").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, raw = line.partition("=")
            values[key] = "".join(shlex.split(raw))
    return values


def send(port: int, url: str, method: str, body: bytes = b"") -> tuple[int, bytes]:
    """``method`` on ``url`` through nginx on 127.0.0.1:port, Host as the URL has it."""
    parts = urlsplit(url)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the dev certificate is self-signed
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=20, context=context)
    try:
        conn.request(method, f"{parts.path}?{parts.query}", body, {"Host": parts.netloc})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_presigned_urls_work_through_a_non_443_port(
    storage_stack: tuple[Path, int], nself: Run
) -> None:
    import boto3
    from botocore.config import Config as BotoConfig

    folder, https = storage_stack
    started = nself("start", "--all", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output
    env = computed(folder)
    public = env["S3_PUBLIC_ENDPOINT"]
    assert public == f"https://storage.{DOMAIN}:{https}"
    client = boto3.client(
        "s3",
        endpoint_url=public,
        aws_access_key_id=env["MINIO_ROOT_USER"],
        aws_secret_access_key=env["MINIO_ROOT_PASSWORD"],
        region_name=env["S3_REGION"],
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )

    def presign(operation: str, **params: str) -> str:
        return str(client.generate_presigned_url(operation, Params=params, ExpiresIn=300))

    assert send(https, presign("create_bucket", Bucket="uploads"), "PUT") == (200, b"")
    put = presign("put_object", Bucket="uploads", Key="avatars/me.png")
    assert send(https, put, "PUT", b"\x89PNG not really") == (200, b"")
    status, body = send(https, presign("get_object", Bucket="uploads", Key="avatars/me.png"), "GET")
    assert (status, body) == (200, b"\x89PNG not really")

    # The stand-in does check: a URL signed for another host (here without the port) is
    # refused as MinIO refuses it.
    other = boto3.client(
        "s3",
        endpoint_url=f"https://storage.{DOMAIN}",
        aws_access_key_id=env["MINIO_ROOT_USER"],
        aws_secret_access_key=env["MINIO_ROOT_PASSWORD"],
        region_name=env["S3_REGION"],
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    unsigned_port = other.generate_presigned_url(
        "get_object", Params={"Bucket": "uploads", "Key": "avatars/me.png"}, ExpiresIn=300
    )
    refused = send(https, unsigned_port.replace(f"{DOMAIN}/", f"{DOMAIN}:{https}/"), "GET")
    assert refused[0] == 403 and b"SignatureDoesNotMatch" in refused[1], refused


def test_minios_metrics_never_leave_through_the_public_route(
    storage_stack: tuple[Path, int], nself: Run
) -> None:
    """Prometheus reads MinIO's metrics over the stack's network without a token
    (MINIO_PROMETHEUS_AUTH_TYPE=public with monitoring on): through nginx, in any spelling,
    nginx answers 404 itself and MinIO never sees the request."""
    folder, https = storage_stack
    started = nself("start", "nginx", "minio", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output
    base = f"https://storage.{DOMAIN}:{https}"
    for path in (
        "/minio/v2/metrics/cluster",
        "/minio/v2/metrics/bucket",
        "/minio/metrics/v3/system/drive",
        "/minio/prometheus/metrics",
        "//minio/v2/metrics/cluster",
        "/minio/v2/%6detrics/cluster",
        "/minio/v2%2Fmetrics/node",
        "/minio/x/../v2/metrics/cluster",
    ):
        status, body = send(https, base + path, "GET")
        assert (status, b"<center>nginx</center>" in body) == (404, True), (path, status, body)
    # the rest of the S3 API still reaches MinIO (which refuses an unsigned request itself)
    status, body = send(https, base + "/uploads", "GET")
    assert b"<center>nginx</center>" not in body and b"<Error>" in body, (status, body)
