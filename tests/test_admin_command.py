"""`nself admin start|stop` on the real engine.

The admin image (nself/nself-admin) cannot be obtained here: a stand-in built from the
local http stand-in answers the admin's health path (/api/health) instead.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import free_port, remove_project, standin, use_standins
from nself_sdk.testing import Result
from test_runtime_e2e import container_of

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]
IMAGE = "nself-test/admin-standin:1"


@pytest.fixture(scope="module")
def admin_image() -> str:
    dockerfile = (
        f"FROM {standin('http')}\nUSER root\n"
        "RUN mkdir -p /www/api && echo ok >/www/api/health\nUSER nobody\n"
    )
    subprocess.run(
        ["docker", "build", "-q", "-t", IMAGE, "-"], input=dockerfile, text=True, check=True,
        capture_output=True,
    )  # fmt: skip
    return IMAGE


@pytest.fixture
def stack(tmp_path: Path, nself: Run, admin_image: str) -> Iterator[tuple[Path, str, int]]:
    name = f"nseltadm{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    assert nself("init", str(folder), "--name", name).code == 0
    port = free_port()
    use_standins(
        folder,
        ".env.dev",
        ADMIN_IMAGE=admin_image,
        ADMIN_PORT=str(port),
    )
    try:
        yield folder, name, port
    finally:
        remove_project(name)


def test_admin_start_and_stop(
    stack: tuple[Path, str, int], nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, name, port = stack
    (folder / ".env.local").write_text("# mine\nADMIN_ENABLED=false\n")
    started = nself("start", "--timeout", "120", cwd=folder)  # the rest of the stack
    assert started.code == 0, started.output
    r = nself("admin", "start", "--no-open", cwd=folder)
    assert r.code == 0, r.output
    assert f"admin UI at http://127.0.0.1:{port}" in r.out
    assert "switched the admin UI on in .env.local" in r.out
    assert (folder / ".env.local").read_text() == "# mine\nADMIN_ENABLED=true\n"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=10) as answer:
        assert answer.status == 200
    bindings = container_of(name, "admin")["HostConfig"]["PortBindings"]
    assert [b["HostIp"] for spec in bindings.values() for b in spec] == ["127.0.0.1"]

    r = nself("admin", "start", "--no-open", cwd=folder)  # again: nothing to switch on
    assert r.code == 0 and "switched" not in r.out

    r = nself("admin", "stop", cwd=folder)
    assert r.code == 0
    assert container_of(name, "admin")["State"]["Running"] is False
    # stopped on purpose: not unhealthy, and the rest of the stack is healthy
    health = nself("health", cwd=folder)
    assert health.code == 0, health.output
    assert any(ln.startswith("- ") and "stopped on purpose" in ln for ln in health.out.splitlines())
    rows = {r["service"]: r for r in json.loads(nself("status", "--json", cwd=folder).out)}
    assert rows["admin"]["stopped"] is True and rows["postgres"]["stopped"] is False
    assert "stopped" in nself("status", cwd=folder).out
    # started again, it is no longer "stopped on purpose"
    assert nself("admin", "start", "--no-open", cwd=folder).code == 0
    assert nself("health", "admin", cwd=folder).code == 0

    monkeypatch.setenv("NSELF_ENV", "staging")
    r = nself("admin", "start", cwd=folder)
    assert r.code == 1 and "the admin UI is local only" in r.err
