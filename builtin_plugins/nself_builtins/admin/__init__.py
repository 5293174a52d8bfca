"""nself Admin: the local GUI companion, dev only, published on 127.0.0.1:3021 and nowhere else.

What it needs, and so what it gets (nself-admin's docs and Dockerfile: it runs nself
commands in the mounted project and manages containers through the Docker socket):

- the project, read and written as its owner does: the container runs as the uid:gid that
  owns the project folder (it reads the 0600 env files and writes generated files like
  you, and nothing you could not), with no capabilities;
- its own data in ``.nself-admin/`` in the project (a folder that user can write; the
  image's volume belongs to its built-in user), kept out of git;
- Docker only when asked (``ADMIN_DOCKER=true``): the engine's socket, with its group.
  Whoever drives the socket is root on this machine, so it stays off by default.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from nself_sdk import (
    Config,
    GeneratedFile,
    HealthCheck,
    ImageContract,
    Mount,
    PortBinding,
    Problem,
    Service,
    ServicePlugin,
    Setting,
    Stack,
    hookimpl,
    safety_rule,
)

if TYPE_CHECKING:
    from typer import Typer

IMAGE = "nself/nself-admin:0.9.0"
PORT = 3021
BIND = "127.0.0.1"
ADMIN = ImageContract(
    image=IMAGE,
    source=("https://github.com/acamarata/nself-admin/blob/main/Dockerfile",),
    # node:20-alpine runner stage: `adduser -S nextjs -u 1001`, USER nextjs.
    user=1001,
    capabilities=(),
    # `mkdir -p /project /data && chown -R nextjs:nodejs /app /project /data`.
    writable=("/data", "/project"),
    # docker-cli, curl, bash and git added to node:20-alpine (busybox wget, sh).
    tools=("node", "docker", "curl", "bash", "git", "sh", "wget"),
    ports=(PORT,),
    platforms=("linux/amd64", "linux/arm64"),
    notes="Facts from the admin's Dockerfile as published (image version 0.2.0); the "
    "0.9.0 tag itself could not be read. Which env names it reads is not listed there.",
)


def allowed(config: Config) -> bool:
    """The safety table allows the admin UI locally only.

    Outside dev the environments plugin refuses ADMIN_ENABLED=true with one error; this
    plugin never contributes the container there either way.
    """
    return safety_rule(config.env, "admin") != "refuse"


def _url(config: Config) -> str:
    return f"http://{BIND}:{config.int('ADMIN_PORT', PORT)}"


DATA = ".nself-admin"


def docker_socket() -> Path:
    """The engine's socket on this machine: DOCKER_HOST's, else the default one."""
    host = os.environ.get("DOCKER_HOST", "")
    return Path(host[len("unix://") :] if host.startswith("unix://") else "/var/run/docker.sock")


def _checks(config: Config) -> list[Problem]:
    port = config.int("ADMIN_PORT", PORT)
    if not 0 < port < 65536:
        return [Problem("error", f"{config.where('ADMIN_PORT')}: ADMIN_PORT must be 1-65535")]
    if config.flag("ADMIN_DOCKER", False) and not docker_socket().is_socket():
        return [
            Problem(
                "error",
                f"{config.where('ADMIN_DOCKER')}: ADMIN_DOCKER=true but there is no Docker "
                f"socket at {docker_socket()}",
                "start the engine, or set DOCKER_HOST=unix:///path/to/docker.sock",
            )
        ]
    return []


def _access(config: Config, service: Service) -> Service:
    """Run as the project's owner; with ADMIN_DOCKER, in the socket's group too."""
    owner = config.project_dir.stat()
    group = owner.st_gid
    mounts = service.mounts
    if config.flag("ADMIN_DOCKER", False) and docker_socket().is_socket():
        socket = docker_socket()
        group = socket.stat().st_gid  # the socket is 0660 root:<this group>
        mounts = (*mounts, Mount(str(socket), "/var/run/docker.sock"))
    return replace(service, user=f"{owner.st_uid}:{group}", mounts=mounts)


def _adapt(config: Config, service: Service) -> Service:
    env = dict(
        service.environment,
        NSELF_PROJECT_NAME=config.project_name,
        NSELF_BASE_DOMAIN=config.domain,
        DATABASE_URL="${DATABASE_URL}",
    )
    depends = ["postgres"]
    if config.flag("HASURA_ENABLED", True):
        env["HASURA_GRAPHQL_ENDPOINT"] = "${HASURA_GRAPHQL_URL}"
        env["HASURA_GRAPHQL_ADMIN_SECRET"] = "${HASURA_GRAPHQL_ADMIN_SECRET}"
        depends.append("hasura")
    return replace(
        _access(config, service),
        environment=env,
        depends_on=tuple(depends),
        # Never on a public interface, whatever the env files say.
        published=(PortBinding(PORT, config.int("ADMIN_PORT", PORT), BIND),),
        direct_url=_url(config),
    )


class AdminPlugin(ServicePlugin):
    """The admin service, and its `nself admin` commands."""

    @hookimpl
    def contribute_files(self, config: Config, stack: Stack) -> list[GeneratedFile]:
        """The admin's data folder, made by the user who builds (so it can write it)."""
        if stack.service("admin") is None:
            return []
        return [GeneratedFile(f"{DATA}/.gitignore", "# nself Admin's own data\n*\n")]

    @hookimpl
    def register_commands(self, app: Typer) -> None:
        from .cli import PANEL
        from .cli import app as commands

        app.add_typer(commands, rich_help_panel=PANEL)


plugin = AdminPlugin(
    Service(
        "admin",
        IMAGE,
        title="nself Admin",
        role="optional",
        port=PORT,
        environment={
            "PORT": str(PORT),
            "HOSTNAME": "0.0.0.0",
            "NODE_ENV": "production",
            "NSELF_PROJECT_PATH": "/workspace",
        },
        healthcheck=HealthCheck(
            ("CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{PORT}/api/health"),
            retries=10,
            start_period="20s",
        ),
        mounts=(Mount("./", "/workspace"), Mount(f"./{DATA}", "/app/data")),
        health_url=f"http://admin:{PORT}/api/health",
        contract=ADMIN,
    ),
    switch=Setting("ADMIN_ENABLED", "false", "Run the admin UI on 127.0.0.1:3021 (dev only)."),
    image=Setting("ADMIN_IMAGE", description="Admin UI image."),
    settings=(
        Setting("ADMIN_PORT", str(PORT), "Host port of the admin UI (always on 127.0.0.1)."),
        Setting(
            "ADMIN_DOCKER",
            "false",
            "Let the admin UI drive Docker (the engine's socket: root on this machine).",
        ),
    ),
    env=lambda config: {"ADMIN_URL": _url(config)},
    adapt=_adapt,
    checks=_checks,
    when=allowed,
)
