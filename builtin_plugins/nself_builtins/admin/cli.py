"""``nself admin start|stop``: a module-level Typer app."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

PANEL = "Run"
SWITCH = re.compile(r"^\s*(export\s+)?ADMIN_ENABLED\s*=.*$", re.MULTILINE)


def enable_locally(project: Any) -> bool:
    """Set ADMIN_ENABLED=true in .env.local (the developer's own layer); False if it was."""
    from nself_sdk import write_atomic

    path = project / ".env.local"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    line = "ADMIN_ENABLED=true"
    if SWITCH.search(text):
        new = SWITCH.sub(line, text)
    else:
        new = text + ("" if text.endswith("\n") or not text else "\n")
        new += f"# switched on by `nself admin start`\n{line}\n"
    if new == text:
        return False
    write_atomic(path, new, path.stat().st_mode & 0o777 if path.exists() else 0o644)
    return True


app = typer.Typer(name="admin", help="The admin UI (local only): start it, stop it.")
app.callback(invoke_without_command=False, no_args_is_help=True)(lambda: None)


@app.command("start")
def start(
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open it in a browser when possible.")
    ] = True,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait.")] = 180,
) -> None:
    """Start the admin UI on 127.0.0.1 (switching it on in .env.local) and open it."""
    import os
    import sys

    from nself_sdk import NselfError, build, find_project, load_config, runtime
    from nself_sdk.console import info, ok

    from . import BIND, PORT, allowed

    project = find_project()
    config = load_config(project)
    if not allowed(config):
        raise NselfError(
            f"the admin UI is local only, not for {config.env}",
            "switch to local (`nself env switch local`) to use it",
        )
    if enable_locally(project):
        info("switched the admin UI on in .env.local (ADMIN_ENABLED=true)")
    result = build(project)
    rt = runtime(result.plan.config)
    up = rt.up(["admin"], wait=True, timeout=float(timeout))
    if "admin" not in up.started or "admin" in up.failed:
        reason = up.failed.get("admin", "it did not become healthy")
        raise NselfError(f"the admin UI did not start: {reason}", "see `nself logs admin`")
    url = f"http://{BIND}:{result.plan.config.int('ADMIN_PORT', PORT)}"
    ok(f"admin UI at {url}")
    graphical = (
        sys.platform == "darwin" or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if open_browser and sys.stdout.isatty() and graphical:
        import webbrowser

        webbrowser.open(url)


@app.command("stop")
def stop() -> None:
    """Stop the admin UI (it stays switched on; ADMIN_ENABLED=false removes it)."""
    from nself_sdk import find_project, load_config, runtime
    from nself_sdk.console import ok

    config = load_config(find_project())
    rt = runtime(config)
    if "admin" in rt.services():
        rt.stop(["admin"])
    ok("admin UI stopped")
