"""``nself deploy``, ``nself rollback`` and ``nself releases``: the staging and production
servers, reached over SSH, each keeping its last releases to roll back to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nself_sdk import Config, Finding, NselfError, Problem, Setting, Stack, hookimpl

if TYPE_CHECKING:
    from typer import Typer

    from nself_sdk import Runtime

SETTINGS = (
    Setting("DEPLOY_HOST", "", "Server of this environment (set it in .env.staging/.env.prod)."),
    Setting("DEPLOY_USER", "root", "SSH user on the server; needs Docker access."),
    Setting("DEPLOY_PORT", "22", "SSH port of the server."),
    Setting("DEPLOY_PATH", "", "Folder of the releases on the server (/opt/nself/PROJECT)."),
    Setting("DEPLOY_SSH_KEY", "", "Private key file for SSH (default: your SSH agent/config)."),
    Setting("DEPLOY_KNOWN_HOSTS", "", "known_hosts file pinning the server's host key (optional)."),
    Setting("DEPLOY_TIMEOUT", "300", "Seconds a new release has to become healthy."),
    Setting("DEPLOY_WATCH", "15", "Seconds a healthy new release is watched before it counts."),
    Setting("DEPLOY_KEEP_RELEASES", "5", "Releases kept on the server for rollback."),
)
_BOUNDS = {
    "DEPLOY_PORT": (1, 65535),
    "DEPLOY_TIMEOUT": (1, 86400),
    "DEPLOY_WATCH": (0, 3600),
    "DEPLOY_KEEP_RELEASES": (1, 100),
}


@hookimpl
def declare_settings() -> list[Setting]:
    return list(SETTINGS)


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    problems = []
    for name, (low, high) in _BOUNDS.items():
        raw = config.text(name).strip()
        if raw and not (raw.isascii() and raw.isdigit() and low <= int(raw) <= high):
            problems.append(
                Problem(
                    "error",
                    f"{config.where(name)}: {name} must be a number {low}-{high}",
                    f"write {name} in plain digits 0-9, or remove it for the default",
                )
            )
    host = config.text("DEPLOY_HOST").strip()
    if host:
        # Imported only when a host is set: builds stay lean.
        from nself_builtins.shared.remote import is_host

        if not is_host(host):
            problems.append(
                Problem("error", f"{config.where('DEPLOY_HOST')}: DEPLOY_HOST is not a host name")
            )
    path = config.text("DEPLOY_PATH").strip()
    if path and not path.startswith("/"):
        problems.append(
            Problem(
                "error",
                f"{config.where('DEPLOY_PATH')}: DEPLOY_PATH must be an absolute path",
                "e.g. DEPLOY_PATH=/opt/nself/myapp",
            )
        )
    return problems


@hookimpl(tryfirst=True)
def provide_runtime(config: Config) -> Runtime | None:
    """Staging and prod with a DEPLOY_HOST run on their server: look at it there."""
    if config.is_local or not config.text("DEPLOY_HOST").strip():
        return None
    from .runtime import ServerRuntime

    return ServerRuntime(config)


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import app as commands

    app.add_typer(commands)


def _serverless(config: Config) -> Finding:
    """Staging or prod without DEPLOY_HOST: fine when it runs on this very machine (a
    server set up with `nself install`), else there is nothing to look at."""
    from nself_sdk import runtime

    env = config.env
    try:
        here = [s for s in runtime(config).status() if s.state != "missing"]
    except NselfError:
        here = []  # this machine runs another target's stack, or no engine at all
    if here:
        return Finding("deploy", "ok", f"{env} runs on this machine (no DEPLOY_HOST)")
    return Finding(
        "deploy",
        "error",
        f"no {env} server is configured: DEPLOY_HOST is not set in .env.{env}, and {env} "
        "does not run on this machine",
        f"set DEPLOY_HOST (and DEPLOY_USER, DEPLOY_PATH if needed) in .env.{env} "
        f"(docs/deploy.md), or set up this machine as the {env} server with `nself install`",
    )


@hookimpl
def diagnose(config: Config, stack: Stack, deep: bool, only: list[str]) -> list[Finding]:
    """``deploy`` (staging/prod): its server reachable, a current release, not locked; or,
    without a server, whether the target runs on this machine (`nself install`)."""
    if config.is_local or (only and "deploy" not in only):
        return []
    if not config.text("DEPLOY_HOST").strip():
        return [_serverless(config)]
    from nself_builtins.shared.remote import Server

    from .flow import history

    try:
        server = Server.from_config(config)
        try:
            seen = history(server)
        finally:
            server.close()
    except NselfError as exc:
        return [Finding("deploy", "error", exc.message, exc.hint)]
    where = server.describe()
    if seen.lock:
        return [
            Finding(
                "deploy",
                "warning",
                f"{where} is locked by {seen.lock}",
                f"if no deploy is running: nself deploy {config.env} --unlock",
            )
        ]
    if not seen.current:
        return [
            Finding(
                "deploy", "warning", f"{where}: nothing deployed yet", f"nself deploy {config.env}"
            )
        ]
    kept = len(seen.releases)
    return [Finding("deploy", "ok", f"{where}: {seen.current} current, {kept} release(s) kept")]
