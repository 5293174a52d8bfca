"""Licences for pro plugins: ``nself license set|status|clear`` and the build-time check.

A plugin's tier is its ``nself_tier`` (bundles) or ``NSELF_TIER`` (Python plugins)
attribute, ``free`` when it has none. Every plugin of another tier needs a licence: the
first ``validate_license`` answer decides, and no answer at all refuses the plugin. The
work is done by ``nself_registry.licensing`` (imported lazily: cryptography is not loaded
unless a licensed plugin or a licence command is involved).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nself_sdk import Config, Finding, Problem, hookimpl

if TYPE_CHECKING:
    from typer import Typer


def tier_of(plugin: object) -> str:
    """A plugin's licence tier: ``free`` unless it says otherwise."""
    return str(getattr(plugin, "nself_tier", None) or getattr(plugin, "NSELF_TIER", "free"))


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    """Each plugin of a licensed tier in this build, checked by the licence plugins."""
    pm = config.pluginmanager
    if pm is None:  # a config the build pipeline did not load: no plugins to check
        return []
    problems: list[Problem] = []
    for name, plugin in pm.list_name_plugin():
        tier = tier_of(plugin)
        if tier == "free":
            continue
        verdict = pm.hook.validate_license(config=config, plugin=name, tier=tier, purpose="build")
        if verdict is None:  # no licence plugin answered: refuse
            verdict = Problem(
                "error", f"plugin {name} needs a {tier} licence", "run `nself license set KEY`"
            )
        if isinstance(verdict, Problem):
            problems.append(verdict)
    return problems


@hookimpl
def validate_license(config: Config, plugin: str, tier: str, purpose: str) -> Problem | bool:
    """Offline verification on every build; online refresh only when due.

    A build never fails because the licence server is down or the licence lapsed for a
    plugin that is already installed: that is a warning. It fails when there is no usable
    licence at all, or the licence does not cover the plugin. An install (``purpose``
    ``"install"``) is strict and always asks the licence server.
    """
    from nself_registry import licensing

    strict = purpose == "install"
    try:
        verdict = licensing.check(
            plugin,
            tier,
            "install" if strict else "use",
            licensing.ping_url(config.text(licensing.PING_VAR) or None),
            timeout=5.0 if strict else 2.0,
        )
    except licensing.LicenceError as exc:
        return Problem("error", exc.message, exc.hint)
    if verdict.warnings:
        return Problem("warning", f"plugin {plugin}: " + "; ".join(verdict.warnings))
    return True


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import PANEL
    from .cli import app as commands

    app.add_typer(commands, rich_help_panel=PANEL)


@hookimpl
def diagnose(config: Config, only: list[str]) -> list[Finding]:
    """``licence``: a stored pro licence verifies offline and is not about to expire (only
    when one is set: free plugins need none)."""
    if only and "licence" not in only:
        return []
    import time

    from nself_registry import licensing

    try:
        lic = licensing.current()
    except licensing.LicenceError as exc:
        return [Finding("licence", "error", exc.message, exc.hint)]
    if lic is None:
        return []
    days = int((lic.expires - time.time()) // 86400)
    until = f"licence {lic.lid} ({lic.tier}) valid until {licensing.day(lic.expires)}"
    if days < 0:
        return [
            Finding(
                "licence",
                "error",
                f"licence {lic.lid} expired on {licensing.day(lic.expires)}",
                "renew it, then `nself license set`",
            )
        ]
    if days < 14:
        return [
            Finding(
                "licence",
                "warning",
                f"{until}: {days} days left",
                "renew it before it expires (`nself license set` the new key)",
            )
        ]
    return [Finding("licence", "ok", f"{until} ({days} days)")]
