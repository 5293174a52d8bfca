"""A host with umask 077 (common on hardened servers) gets the same stack as any other.

Generated files that containers read as their own users (PostgreSQL's init folder as uid
999, Grafana 472, Prometheus and Alertmanager nobody, Tempo 10001) are 0644 in 0755
folders whatever the umask; files holding secrets (.env.computed, the dev key) stay 0600:
they are read by Compose on the host and by nginx's master process (root, with
DAC_OVERRIDE), never by another user.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nself_sdk.testing import Result, set_env
from test_runtime_e2e import psql, stack  # noqa: F401

Run = Callable[..., Result]
PRIVATE = (".env.computed",)


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    manifest = json.loads((folder / ".nself" / "build.json").read_text())
    files = manifest.get("files", manifest)
    return {path: stat.S_IMODE((folder / path).stat().st_mode) for path in files}


def assert_readable_by_others(folder: Path) -> None:
    for path, mode in modes(folder).items():
        if path in PRIVATE or path.endswith(".key"):
            assert mode == 0o600, (path, oct(mode))
            continue
        assert mode & 0o044 == 0o044, (path, oct(mode))
        parent = (folder / path).parent
        while parent != folder:
            folder_mode = stat.S_IMODE(parent.stat().st_mode)
            assert folder_mode & 0o055 == 0o055, (str(parent), oct(folder_mode))
            parent = parent.parent


def test_generated_files_are_readable_by_containers_under_umask_077(
    tmp_path: Path, nself: Run, umask_077: None
) -> None:
    folder = tmp_path / "hardened"
    assert nself("init", str(folder), "--name", "hardened").code == 0
    set_env(folder, ".env.local", MONITORING_ENABLED="true", REDIS_ENABLED="true")
    built = nself("build", cwd=folder)
    assert built.code == 0, built.output
    assert "monitoring/grafana/provisioning/datasources/nself.yml" in modes(folder)
    assert_readable_by_others(folder)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_the_stack_starts_under_umask_077(
    stack: tuple[Path, str, int],  # noqa: F811
    nself: Run,
    umask_077: None,
) -> None:
    folder, _name, _https = stack
    started = nself("start", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output
    assert_readable_by_others(folder)
    # The init scripts ran as uid 999 on a server started with shared_preload_libraries.
    found = psql(nself, folder, "SELECT extname FROM pg_extension WHERE extname = 'pg_cron'")
    assert found.out.strip() == "pg_cron", found.output
