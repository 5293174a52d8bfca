"""Which services use which settings: ``${NAME}`` references, values derived from others,
and services in dependency order (``nself env``, ``nself secrets rotate``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from nself_sdk import Config, Service, Stack
from nself_sdk.envfiles import COMPUTED

from . import replicas

__all__ = [
    "derived_from",
    "in_dependency_order",
    "references",
    "service_references",
    "services_using",
]


# Derived values computed from a setting rather than holding it: the value changes with it.
HASHED = {replicas.PASSWORD_SETTING: "POSTGRES_PASSWORD"}

_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


def references(text: str) -> set[str]:
    """The names ``text`` refers to as ``${NAME}`` or ``${NAME:-default}``."""
    return set(_REF.findall(text))


def derived_from(config: Config, names: Iterable[str]) -> set[str]:
    """``names`` plus every setting whose value is built from them.

    Follows ``${NAME}`` references in the env files (HASURA_GRAPHQL_JWT_SECRET refers to
    HASURA_JWT_KEY) and values plugins derive at build time that embed a value
    (DATABASE_URL holds POSTGRES_PASSWORD), or compute from them (``HASHED``).
    """
    from urllib.parse import quote as urlquote

    found = set(names)
    changed = True
    while changed:
        changed = False
        embedded = {
            form
            for n in found
            for value in [config.get(n) or ""]
            if len(value) >= 8
            for form in (value, urlquote(value, safe=""))
        }
        for name in config.names():
            if name in found:
                continue
            entry = config.origins(name)[-1]
            uses = (
                (not entry.literal and references(entry.raw) & found)
                or (
                    entry.file == COMPUTED
                    and any(form in (config.get(name) or "") for form in embedded)
                )
                or HASHED.get(name) in found
            )
            if uses:
                found.add(name)
                changed = True
    return found


def service_references(service: Service) -> set[str]:
    """Settings a service's compose definition refers to."""
    parts = [service.image, *service.environment.values(), *service.labels.values()]
    parts += list(service.command or ()) + list(service.entrypoint or ())
    if service.healthcheck is not None:
        parts += list(service.healthcheck.test)
    return {name for part in parts for name in references(part)}


def in_dependency_order(stack: Stack, names: Iterable[str]) -> list[str]:
    """``names`` sorted so every service comes after the services it depends on."""
    wanted = set(names)
    by_name = {s.name: s for s in stack.services}
    ordered: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in by_name:
            return
        seen.add(name)
        for dep in sorted(by_name[name].depends_on):
            visit(dep)
        if name in wanted:
            ordered.append(name)

    for name in sorted(wanted):
        visit(name)
    return ordered


def services_using(config: Config, stack: Stack, names: Iterable[str]) -> list[str]:
    """Services that use any of ``names`` (directly or derived), in dependency order."""
    settings = derived_from(config, names)
    users = [s.name for s in stack.services if service_references(s) & settings]
    return in_dependency_order(stack, users)
