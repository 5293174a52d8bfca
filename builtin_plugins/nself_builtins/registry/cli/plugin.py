"""``nself plugin search|sign``: the registry's part of the ``plugin`` command group, a
module-level Typer app added to that group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


@app.command("search")
def search(
    term: Annotated[str, typer.Argument(help="Part of a name or description.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Search the registry for plugins."""
    from nself_registry import client
    from nself_sdk import NselfError, find_project
    from nself_sdk.console import emit_json, info

    try:
        project: Path | None = find_project()
    except NselfError:
        project = None
    hits = client.search(project, term)
    if as_json:
        emit_json(
            [
                {
                    "name": a.name,
                    "version": a.version,
                    "tier": a.tier,
                    "license_required": a.license_required,
                    "description": a.description,
                    "min_nself": a.min_nself,
                }
                for a in hits
            ]
        )
        return
    if not hits:
        info(f"no plugin matches {term!r}" if term else "the registry offers no plugins")
        return
    width = max(len(a.name) for a in hits)
    for a in hits:
        tier = "free" if a.tier == "free" else f"{a.tier}*"
        info(f"{a.name:<{width}}  {a.version:<9} {tier:<5} {a.description}")
    if any(a.license_required for a in hits):
        info("* needs a licence: `nself license set nself_pro_…`")


@app.command("sign")
def sign(
    archive: Annotated[Path, typer.Argument(help="Packed plugin (*.tar.gz).")],
    key: Annotated[Path, typer.Option("--key", "-k", help="Publisher signing key (PEM).")],
) -> None:
    """Write a detached publisher signature (ARCHIVE.sig) for `nself registry publish`."""
    from nself_registry import keys
    from nself_registry.publish import sign_archive
    from nself_sdk.console import ok

    signer = keys.load_private(key)
    keys.refuse_other_role(signer, "publisher", str(key))
    out = sign_archive(archive, signer)
    ok(f"signed {archive.name} with key {keys.key_id(signer.public_key())}: {out}")
