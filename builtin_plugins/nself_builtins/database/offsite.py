"""Copies of backups in S3 (AWS, the project's MinIO, any S3-compatible store).

``push`` uploads a backup's files under ``s3://BUCKET/<project>/`` with the sha256 of each
file in the object's metadata, then checks size and hash metadata of what landed; the
manifest goes last, so a half-uploaded backup is never listed remotely. ``pull`` downloads
to temp names, renames, then runs the same integrity check as ``restore``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from nself_sdk import Config, NselfError

from .backups import Store, check_integrity
from .durable import file_sha256, fsync_dir


@dataclass
class Bucket:
    name: str
    prefix: str
    endpoint: str | None
    region: str
    access_key: str
    secret_key: str

    @classmethod
    def from_config(cls, config: Config) -> Bucket:
        name = config.text("BACKUP_S3_BUCKET")
        if not name:
            raise NselfError(
                "no S3 bucket is configured", "set BACKUP_S3_BUCKET (and endpoint, credentials)"
            )
        return cls(
            name=name,
            prefix=config.project_name,
            endpoint=config.text("BACKUP_S3_ENDPOINT") or None,
            region=config.text("BACKUP_S3_REGION", "us-east-1"),
            access_key=config.text("BACKUP_S3_ACCESS_KEY"),
            secret_key=config.text("BACKUP_S3_SECRET_KEY"),
        )

    def client(self) -> Any:
        import boto3
        from botocore.config import Config as BotoConfig

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key or None,
            aws_secret_access_key=self.secret_key or None,
            config=BotoConfig(retries={"max_attempts": 5, "mode": "standard"}),
        )

    def key(self, filename: str) -> str:
        return f"{self.prefix}/{filename}"


def _files(store: Store, name: str) -> list[str]:
    names = [name, f"{name}.globals.sql"]
    if store.verified_file(name).exists():
        names.append(f"{name}.verified.json")
    return [*names, f"{name}.json"]  # the manifest last


def _fail(action: str, exc: Exception) -> NselfError:
    return NselfError(
        f"S3 {action} failed: {exc}", "check BACKUP_S3_ENDPOINT, the bucket and the credentials"
    )


def push(store: Store, name: str, bucket: Bucket) -> list[str]:
    """Upload backup ``name``; returns the object keys written."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    check_integrity(store, name)  # never copy a damaged backup
    s3 = bucket.client()
    written = []
    try:
        for filename in _files(store, name):
            path = store.root / filename
            digest = file_sha256(path)
            key = bucket.key(filename)
            s3.upload_file(str(path), bucket.name, key, ExtraArgs={"Metadata": {"sha256": digest}})
            head = s3.head_object(Bucket=bucket.name, Key=key)
            if head["ContentLength"] != path.stat().st_size or (
                head.get("Metadata", {}).get("sha256") != digest
            ):
                raise NselfError(f"s3://{bucket.name}/{key} does not match {filename} after upload")
            written.append(key)
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        raise _fail("upload", exc) from None
    return written


def remote_names(bucket: Bucket) -> list[str]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = bucket.client()
    names = []
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket.name, Prefix=f"{bucket.prefix}/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if key.endswith(".dump.json"):
                    names.append(key.rsplit("/", 1)[-1][: -len(".json")])
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        raise _fail("listing", exc) from None
    return sorted(names, reverse=True)


def pull(store: Store, name: str, bucket: Bucket) -> dict[str, Any]:
    """Download backup ``name`` into the backup folder and check it like a restore does."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    folder = store.ensure()
    s3 = bucket.client()
    wanted = [name, f"{name}.globals.sql", f"{name}.json"]
    temps = []
    try:
        for filename in wanted:
            tmp = folder / f".{filename}.download"
            s3.download_file(bucket.name, bucket.key(filename), str(tmp))
            os.chmod(tmp, 0o600)
            temps.append((tmp, folder / filename))
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise _fail("download", exc) from None
    for tmp, final in temps:
        os.replace(tmp, final)
    fsync_dir(folder)
    return check_integrity(store, name)
