"""Helpers for tests that run containers on the shared Docker engine: the local stand-in
images (tests/standins/), free host ports, and whether an engine is there at all."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nself_sdk.testing import set_env

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
