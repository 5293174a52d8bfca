"""TLS: the certificates nginx serves for every routed host, their status and renewal:
nself's development certificate, your own, or ACME certificates (Let's Encrypt) obtained
and renewed by the stack's ``acme`` service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nself_sdk import (
    Config,
    Finding,
    GeneratedFile,
    Problem,
    Service,
    Setting,
    Stack,
    hookimpl,
)

if TYPE_CHECKING:
    from typer import Typer

    from nself_sdk import Runtime


@hookimpl
def declare_settings() -> list[Setting]:
    from .acme import SETTINGS

    return list(SETTINGS)


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    from .acme import validate

    return validate(config)


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    from .acme import services

    return services(config)


@hookimpl
def contribute_files(config: Config, stack: Stack) -> list[GeneratedFile]:
    from .acme import files

    return files(config, stack)


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import app as ssl_app

    app.add_typer(ssl_app, name="ssl", rich_help_panel="Run")


@hookimpl(tryfirst=True)
def stack_started(config: Config, stack: Stack, runtime: Runtime, services: list[str]) -> None:
    """Before nginx reloads (this runs first): placeholders for hosts the build added,
    so the new configuration names files that exist. After nginx started: say so when a
    certificate has expired, misses a host or is failing to renew: never silent."""
    from nself_builtins.shared.tls import ACME_SERVICE, ssl_mode
    from nself_sdk.console import info, warn

    acme = ssl_mode(config) == "acme"
    if acme and ACME_SERVICE in services:
        runtime.exec(ACME_SERVICE, ["python3", "/nself/renewer.py", "prepare"])
    if "nginx" not in services:
        return
    from .checks import ssl_findings

    for finding in ssl_findings(config, stack):
        if finding.level == "ok":
            continue
        if acme and "placeholder" in finding.message and "next try" not in finding.message:
            info(f"certificates: {finding.message.split(':')[0]} is being obtained from the CA")
            continue
        warn(f"certificate: {finding.message}", finding.hint)


@hookimpl
def diagnose(config: Config, stack: Stack, deep: bool, only: list[str]) -> list[Finding]:
    """``ssl``: the certificates nginx serves."""
    if only and "ssl" not in only:
        return []
    from .checks import ssl_findings

    return ssl_findings(config, stack)


@hookimpl
def harden(config: Config, stack: Stack, live: bool) -> list[Finding]:
    """``certificate`` (live): the ones nginx serves are valid for every host (ACME: obtained
    and renewing), from a CA outside dev."""
    if not live:
        return []
    from .checks import ssl_findings

    # Before the stack's first start (`nself install` runs the suite then) the renewer
    # cannot be asked: not checked, like the database's checks, rather than an error.
    found = [
        Finding(
            "certificate",
            f.level,
            f.message.replace("certificates not checked: ", "not checked: "),
            f.hint,
            layer="network",
        )
        for f in ssl_findings(config, stack, unchecked="warning")
    ]
    from nself_builtins.shared.tls import ssl_mode

    if not config.is_local and ssl_mode(config) == "local":
        found = [f for f in found if f.level != "ok"]
        found.append(
            Finding(
                "certificate",
                "warning",
                f"{config.env} serves nself's self-signed development certificate: browsers "
                "warn, and clients told to skip the warning can be intercepted",
                "a certificate from a CA for every host (see docs/tls.md)",
                layer="network",
            )
        )
    return found
