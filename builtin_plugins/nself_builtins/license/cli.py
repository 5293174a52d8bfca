"""``nself license set|status|clear``: the Typer surface, imported only to register it."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Any

import typer

PANEL = "Plugins"


def license_app() -> typer.Typer:
    app = typer.Typer(name="license", help="Set, show or clear the pro-plugin licence.")

    @app.command("set")
    def set_(
        key: Annotated[str, typer.Argument(help="The key (nself_pro_…), or - to read stdin.")],
    ) -> None:
        """Verify a licence key and store it (mode 0600, outside the project)."""
        import time

        from nself_registry import licensing
        from nself_sdk.console import ok, warn

        if key == "-":
            key = sys.stdin.readline().strip()
        lic = licensing.parse(key)
        licensing.check_time(lic, time.time())
        try:
            doc = licensing.ask(_ping_url(), lic, timeout=5.0)
        except licensing.PingFailed as exc:
            doc = None
            warn(
                f"could not confirm the licence online ({exc})",
                f"it works offline for {licensing.GRACE // 86400} days; "
                "`nself license status` retries",
            )
        if doc is not None and doc["signed"]["status"] != "valid":
            raise licensing.LicenceError(
                f"licence {lic.lid} is {doc['signed']['status']} at the licence server: not stored",
                "contact whoever issued the licence",
            )
        path = licensing.store_key(lic)
        if doc is not None:
            state = licensing.load_state()
            state["answer"] = doc
            state["high_water"] = max(int(state.get("high_water", 0)), doc["signed"]["time"])
            licensing.save_state(state)
        who = f" for {lic.subject}" if lic.subject else ""
        ok(
            f"licence {lic.lid} ({lic.tier}){who} set, valid until "
            f"{licensing.day(lic.expires)}: {lic.masked} stored in {path}"
        )
        if licensing.KEY_VAR in _env():
            warn(f"{licensing.KEY_VAR} is set and takes precedence over the stored key")

    @app.command()
    def status(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
        refresh: Annotated[
            bool, typer.Option("--refresh", help="Ask the licence server now.")
        ] = False,
    ) -> None:
        """Show the licence (key masked), its entitlements and its last online check."""
        import time

        from nself_registry import licensing
        from nself_sdk.console import emit_json, info, ok, warn

        key = licensing.load_key()
        if key is None:
            if as_json:
                emit_json({"licence": None})
            else:
                info("no licence set (free plugins only); `nself license set nself_pro_…`")
            return
        lic = licensing.parse(key)
        now = time.time()
        purpose: licensing.Purpose = "install" if refresh else "use"  # install: ask now
        try:
            verdict = licensing.check(
                "", lic.tier, purpose, _ping_url(), now=now, timeout=5.0, reuse_recent=False
            )
            problems = verdict.warnings
            checked = verdict.checked
        except licensing.LicenceError as exc:
            problems, checked = [exc.message], None
        summary = lic.summary()
        summary["source"] = (
            licensing.KEY_VAR if licensing.KEY_VAR in _env() else str(licensing.key_path())
        )
        summary["last_online_check"] = licensing.day(checked) if checked else "never"
        since = checked or float(licensing.load_state().get("set_at", now))
        summary["offline_grace_until"] = licensing.day(since + licensing.GRACE)
        summary["problems"] = problems
        summary["state"] = "valid" if not problems else "degraded"
        if as_json:
            emit_json(summary)
            return
        (ok if not problems else warn)(f"licence {lic.lid} ({lic.tier}) {summary['state']}")
        for name in (
            "key",
            "subject",
            "plugins",
            "tiers",
            "issued",
            "expires",
            "last_online_check",
            "offline_grace_until",
            "source",
        ):
            value = summary[name]
            if isinstance(value, list):
                value = ", ".join(value) or "-"
            info(f"  {name.replace('_', ' '):<20} {value or '-'}")
        for problem in problems:
            warn(problem)

    @app.command()
    def clear() -> None:
        """Forget the stored licence key and its cached server answers."""
        from nself_registry import licensing
        from nself_sdk.console import info, ok, warn

        if licensing.clear_key():
            ok("licence cleared; installed pro plugins keep running until the next build")
        else:
            info("no licence was stored")
        if licensing.KEY_VAR in _env():
            warn(f"{licensing.KEY_VAR} is still set in the environment")

    return app


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if v}


def _ping_url() -> str:
    """The licence server: env, else the current project's setting, else the default."""
    from nself_registry import licensing
    from nself_sdk import NselfError, find_project, load_config

    setting = None
    with contextlib.suppress(NselfError):  # outside a project: env or default
        setting = load_config(find_project()).text(licensing.PING_VAR) or None
    return licensing.ping_url(setting)


def register(app: Any) -> None:
    app.add_typer(license_app(), name="license", rich_help_panel=PANEL)
