"""``nself deploy``, ``nself rollback``, ``nself releases``: top-level commands (added to the
root without a group name); the work is done by ``flow``."""

from __future__ import annotations

from typing import Annotated

import typer

PANEL = "Deploy"
EnvOption = Annotated[str | None, typer.Option("--env", help="staging or prod.")]
ConfirmOption = Annotated[bool, typer.Option("--confirm", help="Confirm it in production.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Show the release; change nothing.")]


app = typer.Typer()


@app.command("deploy", rich_help_panel=PANEL)
def deploy(
    env: Annotated[
        str | None,
        typer.Argument(help="staging or prod (default: the current target)."),
    ] = None,
    confirm: ConfirmOption = False,
    dry_run: DryRunOption = False,
    unlock: Annotated[
        bool,
        typer.Option("--unlock", help="Clear the server's lock left by a deploy that died."),
    ] = False,
) -> None:
    """Ship the stack to the environment's server; an unhealthy release rolls back."""
    from nself_sdk.console import info, ok

    from . import flow

    if unlock:
        held = flow.unlock(env)
        ok(f"lock cleared (it was held by {held})" if held else "the server was not locked")
        return
    outcome = flow.deploy(env, confirm, info, dry_run=dry_run)
    if dry_run:
        for path in outcome.files:
            info(f"    {path}")
        info(f"dry run: {outcome.release} was not uploaded")
        return
    ok(f"deployed {outcome.release} in {outcome.seconds:.1f}s")
    if outcome.previous:
        info(f"  previous release: {outcome.previous} (undo: nself rollback --env {outcome.env})")
    if outcome.pruned:
        info(f"  removed old releases: {', '.join(outcome.pruned)}")


@app.command("rollback", rich_help_panel=PANEL)
def rollback(
    env: EnvOption = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="Releases to go back (default 1).", show_default=False),
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="The release to go back to.")] = None,
    confirm: ConfirmOption = False,
) -> None:
    """Serve an earlier release again (health-gated; the current one stays if it fails).

    Steps count back through the releases that were current, most recent first.
    """
    from nself_sdk.console import info, ok

    from . import flow

    outcome = flow.rollback(env, steps, to, confirm, info)
    ok(f"rolled back to {outcome.release} in {outcome.seconds:.1f}s (was {outcome.previous})")


@app.command("releases", rich_help_panel=PANEL)
def releases(
    env: EnvOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """The releases kept on the server, the current one, the lock and the deploy log."""
    from nself_builtins.shared.remote import Server
    from nself_sdk.console import emit_json, info

    from . import flow

    config = flow.target_config(env)
    server = Server.from_config(config)
    try:
        seen = flow.history(server)
    finally:
        server.close()
    if as_json:
        emit_json(
            {
                "env": config.env,
                "server": server.describe(),
                "current": seen.current or None,
                "releases": seen.releases,
                "lock": seen.lock or None,
                "log": seen.log,
            }
        )
        return
    info(f"{config.env}: {server.describe()}")
    if not seen.releases:
        info("  no releases yet: nself deploy " + config.env)
    for release in reversed(seen.releases):
        mark = "*" if release == seen.current else " "
        info(f"  {mark} {release}")
    if seen.lock:
        info(f"  locked by {seen.lock}")
    if seen.log:
        info("recent:")
        for row in seen.log[-10:]:
            info(f"  {row['time']}  {row['event']:<15} {row['release']}  {row['by']}")


def _alias(env: str) -> typer.Typer:
    """`nself staging deploy`, `nself prod deploy --confirm`: the product's other spelling."""
    alias = typer.Typer(no_args_is_help=True)

    @alias.command("deploy", help=f"Same as `nself deploy {env}`.")
    def deploy_env(
        confirm: ConfirmOption = False,
        dry_run: DryRunOption = False,
    ) -> None:
        deploy(env, confirm=confirm, dry_run=dry_run, unlock=False)

    return alias


app.add_typer(_alias("staging"), name="staging", hidden=True)
app.add_typer(_alias("prod"), name="prod", hidden=True)
