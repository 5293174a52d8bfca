"""The ``nself`` command line: root options, ``init``, ``build``, ``version``.

Every other command comes from a plugin through the ``register_commands`` hook.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__, console
from .console import state
from .errors import NselfError

HELP = "A complete, production-grade, self-hosted backend: one CLI, generated config."
PANEL_PROJECT = "Project"


def project_dir() -> Path:
    """The project the command works on (``--project`` or the nearest one above cwd)."""
    from .config import find_project

    return find_project(state.project or Path.cwd())


def make_app() -> typer.Typer:
    app = typer.Typer(
        name="nself",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
        project: Annotated[
            Path | None, typer.Option("--project", "-C", help="Project folder.")
        ] = None,
        version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
    ) -> None:
        if version:
            typer.echo(f"nself {__version__}")
            raise typer.Exit()
        state.debug = debug
        state.project = project

    @app.command(rich_help_panel=PANEL_PROJECT)
    def init(
        folder: Annotated[Path, typer.Argument(help="Where to create the project.")] = Path("."),
        name: Annotated[str | None, typer.Option(help="Project name (default: folder).")] = None,
        domain: Annotated[str, typer.Option(help="Base domain.")] = "local.nself.org",
        wizard: Annotated[bool, typer.Option("--wizard", help="Ask interactively.")] = False,
        force: Annotated[bool, typer.Option("--force", help="Overwrite a project.")] = False,
    ) -> None:
        """Create a project: env layers with fresh dev secrets, folders, .gitignore."""
        from .plugins import make_manager
        from .scaffold import init as do_init
        from .scaffold import slug

        if wizard:
            name = typer.prompt("Project name", default=name or slug(folder.resolve().name))
            domain = typer.prompt("Base domain", default=domain)
        written = do_init(make_manager(), folder, name, domain, force)
        console.ok(f"created nself project in {folder} ({', '.join(written)})")
        console.info("next: nself build && nself start")

    @app.command(rich_help_panel=PANEL_PROJECT)
    def build(
        check: Annotated[
            bool, typer.Option("--check", help="Validate only; fail if out of date.")
        ] = False,
        env: Annotated[str | None, typer.Option("--env", help="local, staging or prod.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
    ) -> None:
        """Generate docker-compose.yml, nginx config and .env.computed from the env files."""
        from .build import build as do_build
        from .build import public_urls

        result = do_build(project_dir(), env, check=check)
        plan = result.plan
        for problem in plan.warnings:
            console.warn(problem.message, problem.hint)
        urls = public_urls(plan.config, plan.stack)
        if as_json:
            console.emit_json(
                {
                    "env": plan.config.env,
                    "services": [s.name for s in plan.stack.services],
                    "urls": urls,
                    "changes": result.changes,
                    "up_to_date": not result.changes,
                }
            )
        elif check:
            if result.changes:
                for path, what in result.changes.items():
                    console.info(f"  would be {what}: {path}")
            else:
                console.ok(f"configuration is valid and up to date ({plan.config.env})")
        else:
            _summary(plan.config.env, [s.name for s in plan.stack.services], urls, result.changes)
        if check and result.changes:
            raise NselfError("generated files are out of date", "run `nself build`")

    @app.command(rich_help_panel=PANEL_PROJECT)
    def version(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    ) -> None:
        """Show the nself version and the plugins it loaded."""
        from .plugins import installed_plugins

        names = [name for name, _ in installed_plugins()]
        if as_json:
            console.emit_json(
                {"version": __version__, "python": sys.version.split()[0], "plugins": names}
            )
        else:
            console.info(f"nself {__version__} (Python {sys.version.split()[0]})")
            console.info(f"plugins: {', '.join(names)}")

    from .plugins import make_manager

    make_manager().hook.register_commands(app=app)
    return app


def _summary(env: str, services: list[str], urls: dict[str, str], changes: dict[str, str]) -> None:
    console.ok(f"built {len(services)} services for {env}: {', '.join(services)}")
    for name, url in urls.items():
        console.info(f"  {name:<14} {url}")
    if changes:
        shown = ", ".join(f"{p} ({w})" for p, w in changes.items())
        console.info(f"  changed: {shown}")
    else:
        console.info("  no changes")


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # answer before loading Typer and the plugins
        print(f"nself {__version__}")
        return 0
    debug = "--debug" in args
    try:
        command = typer.main.get_command(make_app())
        return command.main(args=args, prog_name="nself", standalone_mode=True)
    except NselfError as exc:
        if debug:
            _traceback()
        problems = getattr(exc, "problems", None)
        for problem in problems or [exc]:
            console.error(problem.message, problem.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.error("interrupted")
        sys.exit(130)
    except Exception as exc:
        if debug:
            _traceback()
        console.error(f"unexpected {type(exc).__name__}: {exc}", "rerun with --debug for details")
        sys.exit(1)


def _traceback() -> None:
    """The traceback for --debug, with secret values masked like all other output."""
    import traceback

    from .redact import scrub

    sys.stderr.write(scrub(traceback.format_exc()))
