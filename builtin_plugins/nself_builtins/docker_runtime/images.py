"""The ``images`` check of ``nself doctor``: each service's image against this host and its
contract.

For every service: the image it runs, whether the engine has it, whether it is built for
this host's platform (an arm64 host cannot run an amd64-only image: "exec format error"),
and where the service breaks its image's contract (``nself_sdk.contract``), on disk too:
files it bind-mounts that its user cannot read (a host umask of 077).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from nself_sdk import Config, Finding, ImageContract, Service, Stack

# The engine's `uname -m` names and the image platforms they are.
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7", "armv6l": "arm/v6"}
# Files looked at below one bind mount (the project folder itself: its first level only).
MOUNT_FILES = 2000


def host_platform(client: Any) -> str | None:
    """``linux/arm64`` etc. of the engine's machine; None when it cannot be asked."""
    try:
        info = client.info()
    except Exception:
        return None
    arch = str(info.get("Architecture") or "")
    return f"{info.get('OSType') or 'linux'}/{ARCHES.get(arch, arch)}"


def local_platform(client: Any, image: str) -> str | None:
    """The platform of ``image`` as the engine has it; None when it does not have it."""
    from docker.errors import DockerException, ImageNotFound

    try:
        attrs = client.images.get(image).attrs
    except (ImageNotFound, DockerException):
        return None
    variant = f"/{attrs['Variant']}" if attrs.get("Variant") else ""
    return f"{attrs.get('Os') or 'linux'}/{attrs.get('Architecture')}{variant}"


def mounted_files(project: Path, service: Service) -> list[str]:
    """Project-relative files the service bind-mounts (a bounded walk)."""
    found: list[str] = []
    for mount in service.mounts:
        if not mount.source.startswith("./"):
            continue
        top = project / mount.source[2:].strip("/")
        if top.is_file():
            found.append(top.relative_to(project).as_posix())
            continue
        walk = top.iterdir() if top == project else top.rglob("*")
        for path in walk:
            if len(found) >= MOUNT_FILES:
                break
            if path.is_file() and not path.is_symlink():
                found.append(path.relative_to(project).as_posix())
    return found


def service_finding(
    config: Config,
    stack: Stack,
    service: Service,
    host: str | None,
    local: str | None,
) -> Finding:
    """One line for ``service``: its image, presence, platform and contract problems."""
    from nself_sdk.contract import mount_problems, problems

    level: Literal["ok", "warning", "error"] = "ok"
    notes: list[str] = []
    hints: list[str] = []
    contract = service.contract if isinstance(service.contract, ImageContract) else None
    if local is not None:
        notes.append(f"present ({local})")
        if host is not None and local != host and not local.startswith(host + "/"):
            level = "error"
            notes.append(f"built for {local}, this host is {host}")
            hints.append(f"remove it (`docker image rm {service.image}`) and start again")
    else:
        notes.append("built by `nself start`" if service.build else "not present yet")
    if contract is None:
        if service.role != "custom":
            level = "warning" if level == "ok" else level
            notes.append("no image contract")
        return _finding(service, level, notes, hints)
    if contract.platforms is not None and host is not None:
        if host in contract.platforms:
            notes.append(f"{contract.image} is published for {host}")
        else:
            level = "error"
            notes.append(f"{contract.image} is not published for {host}")
            hints.append("pick a tag published for this platform (<SERVICE>_IMAGE)")
    if not service.build and service.image != contract.image:
        level = "warning" if level == "ok" else level
        notes.append(f"overridden: the contract describes {contract.image}")
        hints.append("the override must offer what the contract lists (user, tools, env)")
    broken = problems(service, config, routes=stack.routes)
    broken += mount_problems(
        service, config.project_dir, mounted_files(config.project_dir, service)
    )
    if broken:
        level = "error"
        notes += [p.split(": ", 1)[1] for p in broken]
        hints.append("see docs/services.md#images-and-their-contracts")
    if contract.unconfirmed:
        notes.append("unconfirmed: " + ", ".join(contract.unconfirmed))
    return _finding(service, level, notes, hints)


def _finding(
    service: Service, level: Literal["ok", "warning", "error"], notes: list[str], hints: list[str]
) -> Finding:
    message = f"{service.name}: {service.image}, " + "; ".join(notes)
    return Finding("images", level, message, "; ".join(hints) or None)


def image_findings(config: Config, stack: Stack, runtime: Any) -> list[Finding]:
    client = runtime.client()
    host = host_platform(client)
    return [
        service_finding(config, stack, service, host, local_platform(client, service.image))
        for service in sorted(stack.services, key=lambda s: s.name)
    ]
