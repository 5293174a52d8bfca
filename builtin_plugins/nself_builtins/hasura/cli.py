"""``nself hasura replica enable|disable|status``: the read-only Hasura on the database
replica (``replica`` says what it does and does not do)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(name="hasura", help="Hasura GraphQL Engine.", no_args_is_help=True)
replica_app = typer.Typer(
    help="A second, read-only Hasura on the database replica (Hasura CE).",
    no_args_is_help=True,
)
app.add_typer(replica_app, name="replica")
EnvOpt = Annotated[str | None, typer.Option("--env", help="local, staging or prod.")]


def _say_what_it_does(env: str | None, as_json: bool) -> None:
    from nself_builtins.shared.urls import public_url
    from nself_sdk import find_project, load_config
    from nself_sdk.console import emit_json, info, warn

    from . import replica

    project = find_project()
    config = load_config(project, env)
    on = replica.enabled(config)
    first = replica.replica_names(config)[:1]
    read, other, notes = replica.offloaded(project)
    subdomain = config.text(replica.SUBDOMAIN, replica.DEFAULT_SUBDOMAIN)
    url = public_url(config, subdomain)
    primary_url = public_url(config, config.text("HASURA_SUBDOMAIN", "api"))
    if as_json:
        emit_json(
            {
                "enabled": on,
                "service": replica.SERVICE,
                "url": f"{url}/v1/graphql" if on else None,
                "replica": first[0] if first else None,
                "sources_on_replica": read if on else [],
                "sources_not_on_replica": other,
                "notes": notes,
                "read_replica_urls_setting_used": False,
            }
        )
        return
    if not on:
        info("the read-only Hasura is off: every query reads the primary")
        return
    info(f"  {url}/v1/graphql: queries and subscriptions read replica {first[0]}")
    info("    (a hot standby: a little behind the primary; `nself db replica list` says how far)")
    info(f"  {primary_url}/v1/graphql still serves every query sent to it, from the primary:")
    info("    reads move only when your clients send them to the read-only URL")
    info("  mutations sent to the read-only URL fail (the replica refuses writes); metadata")
    info("    changes go through the primary Hasura (the read-only one reads the same metadata)")
    info(
        "  HASURA_GRAPHQL_READ_REPLICA_URLS is not used: Hasura CE ignores read replicas "
        "(Cloud and Enterprise only)"
    )
    if read:
        info(f"  Hasura sources read from the replica: {', '.join(read)}")
    for name in other:
        warn(
            f"the Hasura source {name} does not take its URL from HASURA_GRAPHQL_DATABASE_URL: "
            "the read-only Hasura does not read it from the replica",
            "only sources whose database_url is {from_env: HASURA_GRAPHQL_DATABASE_URL} "
            "(or a plugin's HASURA_PLUGIN_<NAME>_DATABASE_URL) move",
        )
    for note in notes:
        warn(note)


def _switch(on: bool, env: str | None) -> str:
    """Write HASURA_REPLICA_ENABLED where the target keeps it and check the build; returns
    the file written."""
    from nself_builtins.shared.envedit import set_values
    from nself_sdk import NselfError, UsageError, find_project, load_config, plan, write_atomic

    from . import replica

    project = find_project()
    config = load_config(project, env)
    if on and not config.flag("HASURA_ENABLED", True):
        raise UsageError(
            "Hasura is off (HASURA_ENABLED=false): there is nothing to put on the replica"
        )
    if on and not replica.replica_names(config):
        raise NselfError(
            "the database has no replica for a read-only Hasura to read from",
            "add one first: nself db replica add" + ("" if env is None else f" --env {env}"),
        )
    file = ".env.local" if config.env == "dev" else f".env.{config.env}"
    path = project / file
    before = path.read_text(encoding="utf-8") if path.is_file() else None
    set_values(path, {replica.SWITCH: "true" if on else "false"})
    try:
        plan(project, config.env)
    except BaseException:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            write_atomic(path, before, path.stat().st_mode & 0o777)
        raise
    return file


@replica_app.command("enable")
def enable(
    env: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Run a read-only Hasura on the replica, at its own subdomain (api-read)."""
    from nself_sdk.console import info, ok

    file = _switch(True, env)
    if not as_json:
        ok(f"read-only Hasura on the replica: HASURA_REPLICA_ENABLED=true in {file}")
    _say_what_it_does(env, as_json)
    if not as_json:
        info("next: nself build && nself start (or nself deploy ENV)")


@replica_app.command("disable")
def disable(env: EnvOpt = None) -> None:
    """Stop running the read-only Hasura; every query reads the primary again."""
    from nself_sdk.console import info, ok

    file = _switch(False, env)
    ok(f"read-only Hasura off: HASURA_REPLICA_ENABLED=false in {file}")
    info("next: nself build && nself start (its container and route go away)")


@replica_app.command("status")
def status(
    env: EnvOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """What the read-only Hasura reads, and what it does not do."""
    _say_what_it_does(env, as_json)
