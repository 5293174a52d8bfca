"""The compose plugin's part of the hardening suite: what the stack publishes on the host
and what Docker keeps of the containers' logs."""

from __future__ import annotations

import ipaddress

from nself_sdk import Config, Finding, Stack

# The public entry point: its 80/443 are meant to be reachable.
ENTRY = "nginx"


def findings(config: Config, stack: Stack) -> list[Finding]:
    return [*_ports(config, stack), _logs()]


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _ports(config: Config, stack: Stack) -> list[Finding]:
    found = []
    public = []
    for service in stack.services:
        owner = stack.owners.get(service.name, "")
        for port in service.published:
            binding = f"{port.host_ip}:{port.host_port}->{port.container_port}/{port.protocol}"
            if owner == ENTRY and service.name == ENTRY:
                public.append(binding)
            elif not _loopback(port.host_ip):
                found.append(
                    Finding(
                        "ports",
                        "error",
                        f"{service.name} ({owner or 'a plugin'}) publishes {binding}: it is "
                        "reachable from the network without nginx (and Docker's rules skip the "
                        "host firewall)",
                        "reach it through nginx (a route), or publish it on 127.0.0.1 only; "
                        "nothing but nginx should be published",
                        layer="network",
                    )
                )
            elif not config.is_local:
                found.append(
                    Finding(
                        "ports",
                        "warning",
                        f"{service.name} ({owner or 'a plugin'}) publishes {binding} in "
                        f"{config.env}: everyone with a shell on the server reaches it",
                        "reach it through nginx (a route) or `nself exec`",
                        layer="network",
                    )
                )
    if not found:
        listed = ", ".join(public) or "nothing"
        found.append(
            Finding(
                "ports",
                "ok",
                f"only nginx is published ({listed})"
                + (" plus dev tools on 127.0.0.1" if _dev_tools(stack) else ""),
                layer="network",
            )
        )
    return found


def _dev_tools(stack: Stack) -> bool:
    return any(s.published and s.name != ENTRY for s in stack.services)


def _logs() -> Finding:
    from . import LOG_OPTIONS

    return Finding(
        "logs",
        "ok",
        f"container logs are kept by Docker, rotated at {LOG_OPTIONS['max-size']} "
        f"x {LOG_OPTIONS['max-file']} files per container",
        layer="audit",
    )
