"""The Docker engine's part of the hardening suite: published ports and the host firewall.

Checked where the stack runs on this machine's engine (a server prepared by
``nself install``, or a laptop). Every container of the engine counts, not only this
project's: a forgotten ``docker run -p 5432:5432`` is reachable from the internet too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from nself_builtins.shared.firewall import (
    CHAIN,
    UNIT_NAME,
    UNIT_PATH,
    apply,
    host_firewall,
    local_run,
    read_chain,
)
from nself_sdk import Config, Finding, NselfError


def _public(address: str) -> bool:
    try:
        return not ipaddress.ip_address(address or "0.0.0.0").is_loopback
    except ValueError:
        return True


def published(runtime: Any) -> list[tuple[str, str, int]]:
    """``(container, host address, host port)`` of every port published on a non-loopback
    address by any running container of the engine (one listing: containers come and go)."""
    from docker.errors import DockerException

    try:
        listed = runtime.client().api.containers()
    except DockerException as exc:
        raise NselfError(f"the Docker engine did not list its containers: {exc}") from exc
    found = []
    for container in listed:
        name = str((container.get("Names") or ["?"])[0]).lstrip("/")
        for port in container.get("Ports") or ():
            public = port.get("PublicPort")
            address = str(port.get("IP") or "0.0.0.0")
            if isinstance(public, int) and _public(address):
                found.append((name, address, public))
    return sorted(set(found))


def entry_ports(config: Config) -> list[int]:
    """The host ports nginx publishes: the only ones meant to be reached from outside."""
    return sorted({config.int("NGINX_HTTP_PORT", 80), config.int("NGINX_HTTPS_PORT", 443)})


def findings(
    config: Config, runtime: Any, run: Callable[..., tuple[int, str]] = local_run
) -> list[Finding]:
    try:
        exposed = published(runtime)
    except NselfError as exc:
        return [
            Finding("firewall", "warning", f"not checked: {exc.message}", exc.hint, layer="network")
        ]
    allowed = entry_ports(config)
    extra = [(c, a, p) for c, a, p in exposed if p not in allowed]
    chain = read_chain(run)
    if chain.error:
        return [
            Finding(
                "firewall",
                "warning",
                f"{CHAIN} not checked: {chain.error}",
                "run `nself harden` as root (iptables needs it)",
                layer="network",
            )
        ]
    front = host_firewall(run) or "the host firewall"
    fix = _fix(run, allowed)
    ours = chain.allowed_ports()
    if chain.ours and ours == set(allowed):
        shown = ", ".join(map(str, allowed))
        message = f"{CHAIN} lets new connections from outside reach containers on {shown} only"
        if extra:
            listed = ", ".join(f"{c} {a}:{p}" for c, a, p in extra)
            message += f" (published but filtered: {listed})"
        return [Finding("firewall", "ok", message, layer="network")]
    if chain.ours:
        return [
            Finding(
                "firewall",
                "error" if extra else "warning",
                f"nself's {CHAIN} rules let in {sorted(ours)}, but nginx publishes {allowed}",
                "apply them again for the current ports",
                layer="network",
                fix=fix,
            )
        ]
    if chain.drops and not extra:
        return [
            Finding(
                "firewall",
                "ok",
                f"{CHAIN} holds filtering rules of its own (not nself's); nothing but nginx is "
                "published",
                layer="network",
            )
        ]
    if extra:
        listed = ", ".join(f"{c} ({a}:{p})" for c, a, p in extra)
        return [
            Finding(
                "firewall",
                "warning" if config.is_local else "error",
                f"published beyond nginx: {listed}. Docker's NAT rules bypass {front}, and "
                f"{CHAIN} filters nothing: these ports are reachable from the internet",
                "unpublish them (or bind them to 127.0.0.1); `nself harden --fix` adds "
                f"{CHAIN} rules that let only nginx's ports in",
                layer="network",
                fix=fix,
            )
        ]
    return [
        Finding(
            "firewall",
            "warning",
            f"{CHAIN} filters nothing: any port a container publishes later bypasses {front}",
            f"`nself harden --fix` adds {CHAIN} rules that let only nginx's ports "
            f"({', '.join(map(str, allowed))}) in",
            layer="network",
            fix=fix,
        )
    ]


def _fix(run: Callable[..., tuple[int, str]], ports: list[int]) -> Callable[[], str]:
    def fix() -> str:
        from pathlib import Path

        done = apply(run, ports)
        kept = (
            f"kept across reboots by {UNIT_NAME}"
            if Path(UNIT_PATH).is_file()
            else "until reboot: `nself install` keeps them"
        )
        return "; ".join(done) + f" ({kept})"

    return fix
