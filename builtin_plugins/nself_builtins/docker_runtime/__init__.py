"""The builtin container runtime: Docker Engine driven by Compose v2 and the Docker SDK.

It answers ``provide_runtime`` unless ``NSELF_RUNTIME`` names another runtime, so a
third-party plugin (Podman, a cluster) can take over by answering first or by name.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from nself_sdk import Config, Finding, NselfError, Stack, hookimpl

if TYPE_CHECKING:
    from nself_sdk import Runtime

NAME = "docker"


@hookimpl(trylast=True)
def provide_runtime(config: Config) -> Runtime | None:
    wanted = os.environ.get("NSELF_RUNTIME") or config.text("NSELF_RUNTIME", NAME)
    if wanted != NAME:
        return None
    from .runtime import DockerRuntime

    return DockerRuntime(config)


@hookimpl
def diagnose(config: Config, stack: Stack, deep: bool, only: list[str]) -> list[Finding]:
    """The engine and Compose v2 can be reached (when this runtime is the one in use); the
    ``images`` check holds each service's image against this host and its contract."""
    if only and not {"engine", "disk", "ports", "images"} & set(only):
        return []
    from nself_sdk import runtime as runtime_for

    try:
        in_use = getattr(runtime_for(config), "name", "")
    except NselfError:
        in_use = ""
    if in_use != NAME:  # another engine, or the stack runs on the environment's server
        return []
    from .runtime import DockerRuntime

    runtime = DockerRuntime(config)
    try:
        runtime.check()
    except NselfError as exc:
        return [Finding("engine", "error", exc.message, exc.hint)]
    if not config.is_local:
        try:
            runtime.status()
        except NselfError:
            return []  # this machine runs another target's stack: nothing here is this one's
    found = [Finding("engine", "ok", "the Docker engine and Compose v2 answer")]
    if (not only or "ports" in only) and (config.project_dir / "docker-compose.yml").is_file():
        taken = runtime.taken_ports()
        for host_ip, port in taken:
            error = runtime.port_error(host_ip, port)
            found.append(Finding("ports", "error", error.message, error.hint))
        if not taken:
            found.append(Finding("ports", "ok", "every published host port is free or ours"))
    if not only or "disk" in only:
        from .disk import disk_findings

        found += disk_findings(config.project_dir, runtime)
    if not only or "images" in only:
        from .images import image_findings

        found += image_findings(config, stack, runtime)
    return found


@hookimpl
def harden(config: Config, live: bool) -> list[Finding]:
    """``firewall`` (live, when the stack runs on this machine's engine): published ports
    and the DOCKER-USER chain that keeps them from bypassing the host firewall."""
    if not live:
        return []
    from nself_sdk import runtime as runtime_for

    try:
        in_use = runtime_for(config)
    except NselfError:
        return []
    if getattr(in_use, "name", "") != NAME:
        return []
    from .hardening import findings

    return findings(config, in_use)
