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


TRUSTED_AS = {
    "registry": "clients trust it with NSELF_REGISTRY_KEYS={pair} (it signs the index)",
    "publisher": "clients trust it with NSELF_PUBLISHER_KEYS={pair} (it signs artifacts only)",
    "license": "it signs licence keys: its key id must be in nself's licence key set",
    "ping": "it signs the licence server's answers: its key id must be in nself's ping key set",
}


@app.command()
def keygen(
    out: Annotated[Path, typer.Argument(help="Private key file to write (mode 0600).")],
    role: Annotated[
        str,
        typer.Option(help="What the key signs: registry, publisher, license or ping."),
    ] = "registry",
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
) -> None:
    """Create an Ed25519 signing key pair (OUT and OUT.pub) for one role."""
    from nself_registry.publish import keygen as do_keygen
    from nself_sdk.console import info, ok

    if role not in TRUSTED_AS:
        raise UsageError(f"unknown key role {role!r}", f"use one of: {', '.join(TRUSTED_AS)}")
    kid, pub = do_keygen(out, force)
    ok(f"wrote {role} key {out} (private, 0600) and {out}.pub")
    info(f"key id {kid}; " + TRUSTED_AS[role].format(pair=f"{kid}:{pub}"))


@app.command()
def publish(
    bundles: Annotated[Path, typer.Argument(help="Folder of packed plugins (*.tar.gz).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Registry folder to serve.")],
    key: Annotated[
        list[Path],
        typer.Option(
            "--key", "-k", help="Registry signing key (PEM); twice during a key rotation."
        ),
    ],
    name: Annotated[str, typer.Option(help="Registry name.")] = "nself",
    days: Annotated[
        int, typer.Option("--days", help="Days until the index expires (1 to 90).")
    ] = 30,
    version: Annotated[
        int | None, typer.Option("--version", help="Index version (default: previous + 1).")
    ] = None,
) -> None:
    """Build and sign the registry index from a folder of packed plugins."""
    from datetime import timedelta

    from nself_registry import keys
    from nself_registry.index import MAX_VALIDITY
    from nself_registry.publish import publish as do_publish
    from nself_sdk.console import info, ok, warn

    if not 1 <= days <= MAX_VALIDITY.days:
        raise UsageError(
            f"--days must be between 1 and {MAX_VALIDITY.days}",
            "clients refuse an index valid for longer; publish again before it expires",
        )
    signers = [keys.load_private(path) for path in key]
    for path, signer in zip(key, signers, strict=True):
        keys.refuse_other_role(signer, "registry", str(path))
    done = do_publish(bundles, out, signers, name, timedelta(days=days), version)
    found = done.index
    ok(
        f"published index version {found.version} with {len(found.artifacts)} artifacts "
        f"to {out} (expires {found.expires:%Y-%m-%d})"
    )
    for artifact in found.artifacts:
        tier = "" if artifact.tier == "free" else f" [{artifact.tier}]"
        info(f"  {artifact.name} {artifact.version}{tier}")
    for gone in done.withdrawn:
        warn(
            f"{gone.name} {gone.version} withdrawn: its archive is gone from {out}/artifacts",
            "it stays remembered: that version can only ever be published with the same bytes",
        )


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
        Path | None,
        typer.Option("--ping-key", help="Ping key (PEM) signing the licence answers."),
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
    from nself_registry.server import Settings, ping_key_role, run
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
    answering = keys.load_private(ping_key) if ping_key else None
    if answering is not None:
        ping_key_role(answering)
    settings = Settings(
        root=folder,
        token=token,
        ping_key=answering,
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
        list[str] | None,
        typer.Option("--plugin", help="A plugin it covers (repeatable)."),
    ] = None,
    tier_wide: Annotated[
        bool,
        typer.Option("--tier-wide", help="Cover every plugin of --tier, present and future."),
    ] = False,
    subject: Annotated[str, typer.Option(help="Who the licence is for.")] = "",
    ttl_hours: Annotated[int, typer.Option("--refresh-hours", help="Online refresh.")] = 24,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the key here (0600), not stdout.")
    ] = None,
) -> None:
    """Licensor tool: mint a licence key signed with KEY, for the plugins it names
    (--plugin, repeatable) or, explicitly, a whole tier (--tier-wide)."""
    import time

    from nself_registry import keys, licensing
    from nself_sdk import write_atomic
    from nself_sdk.console import ok

    if not plugin and not tier_wide:
        raise UsageError(
            "a licence grants exactly what it lists: name its plugins or the whole tier",
            "add --plugin NAME (repeatable), or --tier-wide for every plugin of --tier",
        )
    if days < 1 or ttl_hours < 1:
        raise UsageError("--days and --refresh-hours must be at least 1")
    signer = keys.load_private(key)
    keys.refuse_other_role(signer, "license", str(key))
    now = int(time.time())
    minted = licensing.issue(
        signer,
        licence_id,
        tier=tier,
        plugins=tuple(plugin or ()),
        tiers=(tier,) if tier_wide else (),
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
