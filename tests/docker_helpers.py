"""Helpers for tests that run containers on the shared Docker engine: the local stand-in
images (tests/standins/), free host ports, throw-away projects on them (each its own
Compose project, removed whatever happens), and whether an engine is there at all."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nself_sdk.testing import Result, set_env

PROJECT_LABEL = "com.docker.compose.project"

# Stand-in images are cached by tag and shared by everyone using this engine: change a
# recipe in tests/standins/, bump the tag here and in build.sh.
STANDIN_TAG = os.environ.get("NSELF_STANDIN_TAG", "4")


def standin(name: str) -> str:
    return f"nself-standin/{name}:{STANDIN_TAG}"


def docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


needs_docker = pytest.mark.skipif(
    not docker_ok() and not os.environ.get("CI"), reason="needs a Docker engine"
)


def free_port() -> int:
    """A TCP port nothing listens on right now (for host ports of a test stack)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def use_standins(folder: Path, layer: str = ".env.local", **values: str) -> tuple[int, int]:
    """Point a project at the local stand-in images on free host ports; returns the
    (HTTP, HTTPS) ports. Hasura and Auth are disabled: their images (hasura/graphql-engine,
    nhost/hasura-auth) cannot be obtained on this machine. SSL_MODE is local and health
    checks run every second unless given."""
    http, https = free_port(), free_port()
    # nself's own certificate unless a test asks for ACME: staging and prod default to
    # ACME, and a test must never reach a real CA.
    values.setdefault("SSL_MODE", "local")
    # Docker runs a container's first health check one interval after it starts (10 s
    # for nginx): every start and restart would wait that long for containers that are
    # up in a second. The checks themselves are the same.
    values.setdefault("HEALTHCHECK_INTERVAL", "1s")
    set_env(
        folder,
        layer,
        HASURA_ENABLED="false",
        AUTH_ENABLED="false",
        POSTGRES_IMAGE=standin("postgres"),
        NGINX_IMAGE=standin("nginx"),
        NGINX_HTTP_PORT=str(http),
        NGINX_HTTPS_PORT=str(https),
        **values,
    )
    return http, https


def docker(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, **kw)


def remove_project(name: str) -> None:
    """Remove everything labelled with the Compose project ``name``, whatever happened."""
    label = f"label={PROJECT_LABEL}={name}"
    ids = docker("ps", "-aq", "--filter", label, check=False).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)
    for kind in ("network", "volume"):
        found = docker(kind, "ls", "-q", "--filter", label, check=False).stdout.split()
        if found:
            docker(kind, "rm", *found, check=False)


@dataclass(frozen=True)
class StandinStack:
    """A throw-away project on the stand-in images: its folder (named as its Compose
    project) and nginx's host ports."""

    folder: Path
    http: int
    https: int

    @property
    def name(self) -> str:
        return self.folder.name


@contextmanager
def standin_stack(
    nself: Callable[..., Result], parent: Path, prefix: str, **values: str
) -> Iterator[StandinStack]:
    """A project made by ``nself init`` in ``parent`` under a name of its own (``prefix``
    and 8 hex digits: a Compose project no other test shares), the stand-in images in its
    ``.env.local`` with ``values`` (``use_standins``); whatever carries its name is removed
    afterwards, even when the test failed."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    folder = parent / name
    made = nself("init", str(folder), "--name", name)
    assert made.code == 0, made.output
    try:
        http, https = use_standins(folder, **values)
        yield StandinStack(folder, http, https)
    finally:
        remove_project(name)


@contextmanager
def standin_project(
    nself: Callable[..., Result], parent: Path, prefix: str, **values: str
) -> Iterator[Path]:
    """``standin_stack``'s folder alone."""
    with standin_stack(nself, parent, prefix, **values) as stack:
        yield stack.folder
