"""What nself generates for images that cannot run here (no container registry is
reachable, and no Debian package stands in for them faithfully): the generated
configuration is held against what their upstream documents say."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from conftest import Result, set_env

Run = Callable[..., Result]


def built(nself: Run, folder: Path, **values: str) -> dict[str, Any]:
    set_env(folder, ".env.local", **values)
    result = nself("build", cwd=folder)
    assert result.code == 0, result.output
    doc: dict[str, Any] = yaml.safe_load((folder / "docker-compose.yml").read_text())
    return doc["services"]


def computed(folder: Path) -> dict[str, str]:
    lines = (folder / ".env.computed").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key: value.strip("'\"") for key, value in pairs}


def test_minio_console_is_configured_for_a_reverse_proxy(project: Path, nself: Run) -> None:
    # MinIO's reverse-proxy setup: the console at its own host via
    # MINIO_BROWSER_REDIRECT_URL; MINIO_SERVER_URL would make the console dial the public
    # host from inside the container, where it resolves to this machine or 127.0.0.1.
    services = built(nself, project, STORAGE_ENABLED="true")
    env = services["minio"]["environment"]
    assert "MINIO_SERVER_URL" not in env
    assert env["MINIO_BROWSER_REDIRECT_URL"] == "${MINIO_BROWSER_REDIRECT_URL}"
    values = computed(project)
    assert values["MINIO_BROWSER_REDIRECT_URL"] == "https://storage-console.local.nself.org"
    assert values["S3_PUBLIC_ENDPOINT"] == "https://storage.local.nself.org"
    assert "MINIO_SERVER_URL" not in values
