"""``nself registry keygen|publish|serve|issue-license``: a module-level Typer app; the
work is done by the registry library (``nself_registry``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nself_sdk import UsageError

PANEL = "Plugins"

app = typer.Typer(
    name="registry",
    help="Run a plugin registry and publish signed plugins to it.",
    no_args_is_help=True,
)


@app.command()
def keygen(
    out: Annotated[Path, typer.Argument(help="Private key file to write (mode 0600).")],
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
) -> None:
    """Create an Ed25519 signing key pair (OUT and OUT.pub)."""
    from nself_registry.publish import keygen as do_keygen
    from nself_sdk.console import info, ok

    kid, pub = do_keygen(out, force)
    ok(f"wrote {out} (private, 0600) and {out}.pub")
    info(f"key id {kid}; clients trust it with NSELF_REGISTRY_KEYS={kid}:{pub}")


@app.command()
def publish(
    bundles: Annotated[Path, typer.Argument(help="Folder of packed plugins (*.tar.gz).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Registry folder to serve.")],
    key: Annotated[Path, typer.Option("--key", "-k", help="Registry signing key (PEM).")],
    name: Annotated[str, typer.Option(help="Registry name.")] = "nself",
    days: Annotated[int, typer.Option("--days", help="Days until the index expires.")] = 30,
    version: Annotated[
        int | None, typer.Option("--version", help="Index version (default: previous + 1).")
    ] = None,
) -> None:
    """Build and sign the registry index from a folder of packed plugins."""
    from datetime import timedelta

    from nself_registry import keys
    from nself_registry.publish import publish as do_publish
    from nself_sdk.console import info, ok

    if days < 1:
        raise UsageError("--days must be at least 1")
    found = do_publish(bundles, out, keys.load_private(key), name, timedelta(days=days), version)
    ok(
        f"published index version {found.version} with {len(found.artifacts)} artifacts "
        f"to {out} (expires {found.expires:%Y-%m-%d})"
    )
    for artifact in found.artifacts:
        tier = "" if artifact.tier == "free" else f" [{artifact.tier}]"
        info(f"  {artifact.name} {artifact.version}{tier}")


@app.command()
def serve(
    folder: Annotated[
        Path | None, typer.Argument(help="Registry folder (index.json, artifacts/).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
    token_env: Annotated[
        str,
        typer.Option(
            "--token-env", help="Env variable holding the bearer token of a private registry."
        ),
    ] = "",
    ping_key: Annotated[
        Path | None, typer.Option("--ping-key", help="Licence-answer signing key (PEM).")
    ] = None,
    revoked: Annotated[
        Path | None, typer.Option("--revoked", help="File of revoked licence ids.")
    ] = None,
    telemetry: Annotated[
        Path | None, typer.Option("--telemetry", help="Append opt-in telemetry here.")
    ] = None,
) -> None:
    """Serve a registry (public, or private with a token) and the ping_api."""
    import os

    from nself_registry import keys
    from nself_registry.server import Settings, run
    from nself_sdk.console import info

    if folder is not None and not (folder / "index.json").is_file():
        raise UsageError(
            f"{folder} has no index.json", "run `nself registry publish` into it first"
        )
    if folder is None and ping_key is None:
        raise UsageError("nothing to serve", "give a registry FOLDER, --ping-key, or both")
    token = os.environ.get(token_env, "") if token_env else ""
    if token_env and len(token) < 16:
        raise UsageError(f"{token_env} must hold a token of at least 16 characters")
    settings = Settings(
        root=folder,
        token=token,
        ping_key=keys.load_private(ping_key) if ping_key else None,
        revoked_file=revoked,
        telemetry_file=telemetry,
    )
    kind = "private" if token else "public"
    info(f"serving {kind} registry {folder or '(none)'} on http://{host}:{port}/")
    run(settings, host, port)


@app.command("issue-license")
def issue_license(
    key: Annotated[Path, typer.Option("--key", "-k", help="Licence signing key (PEM).")],
    licence_id: Annotated[str, typer.Option("--id", help="Licence id, e.g. lic_0001.")],
    days: Annotated[int, typer.Option("--days", help="Days until it expires.")] = 365,
    tier: Annotated[str, typer.Option(help="pro or enterprise.")] = "pro",
    plugin: Annotated[
        list[str] | None, typer.Option("--plugin", help="Entitled plugin (repeatable).")
    ] = None,
    subject: Annotated[str, typer.Option(help="Who the licence is for.")] = "",
    ttl_hours: Annotated[int, typer.Option("--refresh-hours", help="Online refresh.")] = 24,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the key here (0600), not stdout.")
    ] = None,
) -> None:
    """Licensor tool: mint a licence key signed with KEY."""
    import time

    from nself_registry import keys, licensing
    from nself_sdk import write_atomic
    from nself_sdk.console import ok

    now = int(time.time())
    minted = licensing.issue(
        keys.load_private(key),
        licence_id,
        tier=tier,
        plugins=tuple(plugin or ()),
        issued=now,
        expires=now + days * 86400,
        ttl=ttl_hours * 3600,
        subject=subject,
    )
    if out is None:
        typer.echo(minted)
    else:
        write_atomic(out, minted + "\n", 0o600)
        ok(f"wrote licence {licence_id} to {out}")
