"""``nself nginx test|reload|show``: a module-level Typer app."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from nself_builtins.shared.nginx import is_running, reload_running, tested

PANEL = "Run"


def _runtime() -> tuple[Any, Any]:
    from nself_sdk import find_project, load_config, runtime

    config = load_config(find_project())
    return config, runtime(config)


app = typer.Typer(
    name="nginx", help="Test, reload and show the nginx configuration.", no_args_is_help=True
)


@app.command("test")
def test() -> None:
    """Check the configuration on disk with the service's nginx (`nginx -t`)."""
    from nself_sdk import NselfError
    from nself_sdk.console import ok

    config, rt = _runtime()
    running = is_running(rt)
    if not running:
        from nself_builtins.shared.certificates import placeholders

        placeholders(config, rt)
    why = tested(rt, running)
    if why is not None:
        raise NselfError(
            f"nginx configuration is invalid: {why}",
            "fix the file named (hand-written files live in nginx/conf.d/), "
            "or run `nself build` if a generated one was edited",
        )
    where = "the running nginx" if running else "a throw-away nginx container"
    ok(f"nginx configuration is valid (checked by {where})")


@app.command("reload")
def reload() -> None:
    """Test the configuration, then load it into the running nginx without downtime."""
    from nself_sdk import NselfError
    from nself_sdk.console import ok

    _config, rt = _runtime()
    if not is_running(rt):
        raise NselfError("nginx is not running", "start it: nself start nginx")
    why = tested(rt, True)
    if why is not None:
        raise NselfError(
            f"nginx configuration is invalid, not reloaded: {why}",
            "nginx keeps serving its current configuration; fix the file and reload again",
        )
    reload_running(rt)
    ok("nginx reloaded: configuration tested and loaded, connections kept")


@app.command("show")
def show(
    site: Annotated[
        str | None, typer.Argument(help="Only this site, e.g. api (nginx/sites/api.conf).")
    ] = None,
) -> None:
    """Print the configuration on disk: nginx.conf, the generated sites, conf.d."""
    from nself_sdk import NselfError, find_project
    from nself_sdk.console import info

    folder = find_project() / "nginx"
    if site is not None:
        files = [folder / "sites" / f"{site}.conf"]
        if not files[0].is_file():
            known = sorted(p.stem for p in (folder / "sites").glob("*.conf"))
            raise NselfError(f"no generated site {site!r}", f"sites: {', '.join(known) or 'none'}")
    else:
        files = [folder / "nginx.conf", *sorted((folder / "sites").glob("*.conf"))]
        files += sorted((folder / "conf.d").glob("*.conf"))
    if not files[0].is_file():
        raise NselfError("the nginx configuration has not been generated", "run `nself build`")
    for path in files:
        info(f"# --- {path.relative_to(folder.parent)} ---")
        info(path.read_text(encoding="utf-8", errors="replace").rstrip("\n"))
