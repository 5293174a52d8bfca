"""``nself nginx test|reload|show``: a module-level Typer app."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from nself_builtins.shared.nginx import is_running, test_then_reload, tested

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
    test_then_reload(
        rt,
        "nginx configuration is invalid, not reloaded",
        "nginx keeps serving its current configuration; fix the file and reload again",
    )
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


upstream = typer.Typer(
    name="upstream",
    help="Load-balanced upstreams: several servers behind one route, with passive health.",
    no_args_is_help=True,
)
app.add_typer(upstream)
EnvOpt = Annotated[
    str,
    typer.Option(
        "--env",
        help="The env file: dev (.env.dev, every environment), staging or prod (that one).",
    ),
]


@upstream.command("add")
def upstream_add(
    name: Annotated[str, typer.Argument(help="The upstream's name (its subdomain by default).")],
    server: Annotated[
        list[str],
        typer.Option("--server", help="HOST:PORT, a stack service or an external host; repeat."),
    ],
    weight: Annotated[
        list[int] | None,
        typer.Option("--weight", help="One per --server, in order (default 1 each)."),
    ] = None,
    subdomain: Annotated[
        str | None, typer.Option("--subdomain", help="Public route SUBDOMAIN.BASE_DOMAIN.")
    ] = None,
    max_fails: Annotated[
        int | None,
        typer.Option("--max-fails", help="Failures within --fail-timeout that skip a server (1)."),
    ] = None,
    fail_timeout: Annotated[
        str | None,
        typer.Option("--fail-timeout", help="How long a failed server is skipped (10s)."),
    ] = None,
    env: EnvOpt = "dev",
) -> None:
    """Add an upstream: written to the env file, checked by nginx, then loaded."""
    from nself_sdk import find_project
    from nself_sdk.console import info, ok

    from .editing import add

    done = add(find_project(), name, server, weight or [], subdomain, max_fails, fail_timeout, env)
    ok(f"upstream {name}: {len(server)} servers, written to {', '.join(done.files)}")
    _said(done)
    if done.url:
        info(f"  {done.url}")


@upstream.command("remove")
def upstream_remove(
    name: Annotated[str, typer.Argument(help="The upstream to remove.")], env: EnvOpt = "dev"
) -> None:
    """Remove an upstream from every env file, then reload nginx (tested first)."""
    from nself_sdk import find_project
    from nself_sdk.console import ok

    from .editing import remove

    done = remove(find_project(), name, env)
    ok(f"upstream {name} removed from {', '.join(done.files)}")
    _said(done)


def _said(done: Any) -> None:
    from nself_sdk.console import info

    if done.tested:
        info(f"  nginx -t passed in {done.tested}; loaded by the running nginx")
    else:
        info(
            "  nginx is not running here: `nself start` loads it (`nself nginx test` checks "
            "it now; a deploy checks it on the server)"
        )


@upstream.command("list")
def upstream_list(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    env: Annotated[str | None, typer.Option("--env", help="local, staging or prod.")] = None,
) -> None:
    """Every upstream (yours and the replicated services'), and what nginx resolved."""
    from nself_sdk import find_project, plan
    from nself_sdk.console import emit_json, info

    from .editing import resolved, rows

    the_plan = plan(find_project(), env)
    found = rows(the_plan.config, the_plan.stack)
    live = resolved(the_plan.config) if the_plan.config.is_local else None
    for row in found:
        literal = row.pop("literal", [])
        if live is not None:
            row["resolved"] = literal + live.get(row["block"], [])
    if as_json:
        emit_json(found)
        return
    if not found:
        info("no upstreams: add one with nself nginx upstream add NAME --server HOST:PORT")
        return
    for row in found:
        info(f"{row['name']}  ({row['kind']}, {row['subdomain']}.{the_plan.config.domain})")
        for item in row["servers"]:
            weight = f"  weight {item['weight']}" if item["weight"] != 1 else ""
            info(f"  {item['server']}{weight}")
        info(f"  health: {row['health']}")
        if "resolved" in row:
            addresses = ", ".join(row["resolved"]) or "none (no server name resolves)"
            info(f"  nginx sends to: {addresses}")
