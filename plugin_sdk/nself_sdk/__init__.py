"""The stable surface for nself plugin authors.

Import everything a plugin needs from here, never from ``nself`` internals::

    from nself_sdk import hookimpl, Service, Route, Setting

    @hookimpl
    def contribute_services(config):
        return [Service(name="whoami", image="traefik/whoami:v1.10", port=80)]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from nself import __version__ as nself_version
from nself.atomic import write_atomic
from nself.config import TRUE
from nself.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError, NselfError, UsageError
from nself.model import GeneratedFile, Problem
from nself.redact import MASK, scrub, secret_name

if TYPE_CHECKING:
    from .containers import (
        ExecResult,
        HealthResult,
        HealthStatus,
        Progress,
        ProgressCallback,
        Runtime,
        ServiceState,
        UpResult,
    )

from .config import Config
from .contract import ImageContract
from .declare import ServicePlugin, Subdomain
from .exitcodes import EXIT_DEGRADED, EXIT_NOT_CONFIRMED
from .findings import Finding
from .model import (
    DatabaseRole,
    HealthCheck,
    Migration,
    Mount,
    PortBinding,
    Route,
    Service,
    Setting,
    Stack,
)
from .project import (
    build,
    find_project,
    load_config,
    plan,
    public_urls,
    runtime,
    stack,
)
from .safety import NotConfirmed, require_confirmation, require_yes
from .safety import rule as safety_rule

# The runtime's types are needed by the commands that touch containers, not by every start
# of nself: they are imported on first use (`from nself_sdk import Runtime` works as usual).
_LAZY = {
    name: "nself_sdk.containers"
    for name in (
        "ExecResult",
        "HealthResult",
        "HealthStatus",
        "Progress",
        "ProgressCallback",
        "Runtime",
        "ServiceState",
        "UpResult",
    )
}


if not TYPE_CHECKING:  # hidden from mypy, which would take every name as defined

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'nself_sdk' has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(module), name)
        globals()[name] = value
        return value


hookimpl = pluggy.HookimplMarker("nself")

__all__ = [
    "EXIT_DEGRADED",
    "EXIT_FAILED",
    "EXIT_NOT_CONFIRMED",
    "EXIT_OK",
    "EXIT_USAGE",
    "MASK",
    "TRUE",
    "Config",
    "ConfigError",
    "DatabaseRole",
    "ExecResult",
    "Finding",
    "GeneratedFile",
    "HealthCheck",
    "HealthResult",
    "HealthStatus",
    "ImageContract",
    "Migration",
    "Mount",
    "NotConfirmed",
    "NselfError",
    "PortBinding",
    "Problem",
    "Progress",
    "ProgressCallback",
    "Route",
    "Runtime",
    "Service",
    "ServicePlugin",
    "ServiceState",
    "Setting",
    "Stack",
    "Subdomain",
    "UpResult",
    "UsageError",
    "build",
    "find_project",
    "hookimpl",
    "load_config",
    "nself_version",
    "plan",
    "public_urls",
    "require_confirmation",
    "require_yes",
    "runtime",
    "safety_rule",
    "scrub",
    "secret_name",
    "stack",
    "write_atomic",
]
