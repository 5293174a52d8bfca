"""``nself nginx test|reload|show``: the Typer surface, loaded only to register it.

Every check runs the service's own nginx binary on the files as the container sees them
(generated sites and hand-written ``conf.d``), so "valid" means valid for the version that
serves them. A reload is always tested first: an invalid configuration is refused and the
running nginx keeps serving the one it has.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

PANEL = "Run"
SERVICE = "nginx"
CONF = "/etc/nginx/nself/nginx.conf"


def _runtime() -> tuple[Any, Any]:
    from nself_sdk import find_project, load_config, runtime

    config = load_config(find_project())
    return config, runtime(config)


def _running(rt: Any) -> bool:
    return any(s.name == SERVICE and s.running for s in rt.status())


def _problems(output: str) -> list[str]:
    """nginx's own complaints (``[emerg] ... in FILE:LINE``), path shown as in the project."""
    lines = [line.strip() for line in output.splitlines()]
    found = [line for line in lines if "[emerg]" in line or "[crit]" in line]
    return [line.replace("/etc/nginx/nself/", "nginx/") for line in found or lines[-1:]]


def tested(rt: Any, running: bool) -> str | None:
    """Why nginx refuses the configuration on disk, or ``None`` when it is valid."""
    argv = ["nginx", "-t", "-q", "-c", CONF]
    result = rt.exec(SERVICE, argv) if running else rt.run(SERVICE, argv)
    if result.exit_code == 0:
        return None
    text = result.stderr.decode("utf-8", "replace") + result.output
    return "; ".join(_problems(text)) or f"nginx -t exited with {result.exit_code}"


def register(app: Any) -> None:
    group = typer.Typer(help="Test, reload and show the nginx configuration.", no_args_is_help=True)
    app.add_typer(group, name="nginx", rich_help_panel=PANEL)

    @group.command("test")
    def test() -> None:
        """Check the configuration on disk with the service's nginx (`nginx -t`)."""
        from nself_sdk import NselfError
        from nself_sdk.console import ok

        _config, rt = _runtime()
        running = _running(rt)
        why = tested(rt, running)
        if why is not None:
            raise NselfError(
                f"nginx configuration is invalid: {why}",
                "fix the file named (hand-written files live in nginx/conf.d/), "
                "or run `nself build` if a generated one was edited",
            )
        where = "the running nginx" if running else "a throw-away nginx container"
        ok(f"nginx configuration is valid (checked by {where})")

    @group.command("reload")
    def reload() -> None:
        """Test the configuration, then load it into the running nginx without downtime."""
        from nself_sdk import NselfError
        from nself_sdk.console import ok

        _config, rt = _runtime()
        if not _running(rt):
            raise NselfError("nginx is not running", "start it: nself start nginx")
        why = tested(rt, True)
        if why is not None:
            raise NselfError(
                f"nginx configuration is invalid, not reloaded: {why}",
                "nginx keeps serving its current configuration; fix the file and reload again",
            )
        result = rt.exec(SERVICE, ["nginx", "-s", "reload", "-c", CONF])
        if result.exit_code != 0:
            why = "; ".join(_problems(result.stderr.decode("utf-8", "replace") + result.output))
            raise NselfError(f"nginx did not reload: {why}", "see `nself logs nginx`")
        ok("nginx reloaded: configuration tested and loaded, connections kept")

    @group.command("show")
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
                raise NselfError(
                    f"no generated site {site!r}", f"sites: {', '.join(known) or 'none'}"
                )
        else:
            files = [folder / "nginx.conf", *sorted((folder / "sites").glob("*.conf"))]
            files += sorted((folder / "conf.d").glob("*.conf"))
        if not files[0].is_file():
            raise NselfError("the nginx configuration has not been generated", "run `nself build`")
        for path in files:
            info(f"# --- {path.relative_to(folder.parent)} ---")
            info(path.read_text(encoding="utf-8", errors="replace").rstrip("\n"))
