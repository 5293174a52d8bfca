"""``nself secrets generate|rotate|audit``: the Typer surface, loaded only to register it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

PANEL = "Environments and secrets"
ENV_HELP = "local, staging or prod (default: the current target)."


def register(app: Any) -> None:
    group = typer.Typer(help="Generate, rotate and audit the project's secrets.")
    group.callback(invoke_without_command=False, no_args_is_help=True)(lambda: None)

    @group.command("generate")
    def generate(
        env: Annotated[str | None, typer.Option("--env", help=ENV_HELP)] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    ) -> None:
        """Fill missing secrets (and dev stubs outside local) into .env.secrets.

        Never overwrites a value already set.
        """
        from .commands import generate as run

        run(env, as_json)

    @group.command("rotate")
    def rotate(
        name: Annotated[str, typer.Argument(help="The secret to replace, e.g. HASURA_JWT_KEY.")],
        env: Annotated[str | None, typer.Option("--env", help=ENV_HELP)] = None,
        yes: Annotated[
            bool, typer.Option("--yes", "-y", help="Accept the consequences without asking.")
        ] = False,
        timeout: Annotated[
            float, typer.Option("--timeout", help="Seconds to wait for each service.")
        ] = 180.0,
    ) -> None:
        """Regenerate NAME, restart the services that use it and check they come back healthy.

        The services restart in dependency order after a rebuild.
        """
        from .commands import rotate as run

        run(name, env, yes, timeout)

    @group.command("audit")
    def audit(
        env: Annotated[str | None, typer.Option("--env", help=ENV_HELP)] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    ) -> None:
        """Flag weak, reused, dev-stub, missing or readable secrets (exit 1 on findings)."""
        from .commands import audit as run

        run(env, as_json)

    app.add_typer(group, name="secrets", rich_help_panel=PANEL)
