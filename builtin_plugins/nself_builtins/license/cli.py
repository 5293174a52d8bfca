"""``nself license set|status|clear``: a module-level Typer app; the work is done by
``keys``."""

from __future__ import annotations

from typing import Annotated

import typer

PANEL = "Plugins"
SHOWN = (
    "key",
    "subject",
    "plugins",
    "tiers",
    "issued",
    "expires",
    "last_online_check",
    "offline_grace_until",
    "source",
)

app = typer.Typer(name="license", help="Set, show or clear the pro-plugin licence.")


@app.command("set")
def set_(
    key: Annotated[str, typer.Argument(help="The key (nself_pro_…), or - to read stdin.")],
) -> None:
    """Verify a licence key and store it (mode 0600, outside the project)."""
    from nself_registry import licensing
    from nself_sdk.console import ok, warn

    from .keys import key_in_environment, set_key

    lic, path = set_key(key, warn)
    who = f" for {lic.subject}" if lic.subject else ""
    ok(
        f"licence {lic.lid} ({lic.tier}){who} set, valid until "
        f"{licensing.day(lic.expires)}: {lic.masked} stored in {path}"
    )
    if key_in_environment():
        warn(f"{licensing.KEY_VAR} is set and takes precedence over the stored key")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Ask the licence server now.")] = False,
) -> None:
    """Show the licence (key masked), its entitlements and its last online check."""
    from nself_sdk.console import emit_json, info, ok, warn

    from .keys import summary

    found = summary(refresh)
    if found is None:
        if as_json:
            emit_json({"licence": None})
        else:
            info("no licence set (free plugins only); `nself license set nself_pro_…`")
        return
    if as_json:
        emit_json(found)
        return
    problems = found["problems"]
    (ok if not problems else warn)(f"licence {found['licence']} ({found['tier']}) {found['state']}")
    for name in SHOWN:
        value = found[name]
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        info(f"  {name.replace('_', ' '):<20} {value or '-'}")
    for problem in problems:
        warn(problem)


@app.command()
def clear() -> None:
    """Forget the stored licence key (the licence server's signed answers are kept)."""
    from nself_registry import licensing
    from nself_sdk.console import info, ok, warn

    from .keys import key_in_environment

    if licensing.clear_key():
        ok("licence cleared; installed pro plugins keep running until the next build")
    else:
        info("no licence was stored")
    if key_in_environment():
        warn(f"{licensing.KEY_VAR} is still set in the environment")
