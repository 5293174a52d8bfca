"""The ``nself`` command line: root options, ``version``, and the error and exit policy.

Every other command comes from a plugin through the ``register_commands`` hook. Typer is
imported only once a command has to be parsed, so ``nself --version`` starts in a blink.
"""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

from . import __version__, console
from .console import state
from .errors import NselfError

if TYPE_CHECKING:
    import typer


HELP = "A complete, production-grade, self-hosted backend: one CLI, generated config."
PANEL_PROJECT = "Project"
# Root options that take a value (needed to find the command name in argv).
_VALUE_OPTIONS = {"--project", "-C"}


def project_dir() -> Path:
    """The project the command works on (``--project`` or the nearest one above cwd)."""
    from .config import find_project

    return find_project(state.project or Path.cwd())


def make_app() -> "typer.Typer":
    """The Typer app: the kernel's commands plus every plugin's ``register_commands``."""
    import typer

    app = typer.Typer(
        name="nself",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        debug: Annotated[
            bool, typer.Option("--debug", help="Show tracebacks (secrets masked).")
        ] = False,
        project: Annotated[
            Path | None, typer.Option("--project", "-C", help="Project folder.")
        ] = None,
        version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
    ) -> None:
        """A complete, production-grade, self-hosted backend: one CLI, generated config."""
        if version:
            typer.echo(f"nself {__version__}")
            raise typer.Exit()
        state.debug = state.debug or debug  # `main` takes --debug from anywhere in argv
        state.project = project

    def version(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    ) -> None:
        """Show the nself version and the plugins it loaded."""
        from .plugins import installed

        plugins = [
            {"name": p.name, "distribution": p.dist, "version": p.version} for p in installed()
        ]
        python = sys.version.split()[0]
        if as_json:
            console.emit_json({"version": __version__, "python": python, "plugins": plugins})
            return
        console.info(f"nself {__version__} (Python {python})")
        console.info(f"plugins ({len(plugins)}):")
        for p in plugins:
            console.info(f"  {p['name']:<16} {p['distribution']} {p['version']}")

    from .plugins import make_manager

    make_manager().hook.register_commands(app=app)
    own = typer.Typer()  # added last: `version` is listed after the project's init and build
    own.command(rich_help_panel=PANEL_PROJECT)(version)
    app.add_typer(own)
    return app


def _command_name(args: list[str]) -> str | None:
    """The first word of ``args`` that is not a root option or its value."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def get_command(app: "typer.Typer", only: str | None = None) -> Any:
    """The Click command of ``app``; with ``only``, convert just that command or group.

    Converting every plugin command costs start-up time on every run; a run needs the one
    it executes (help and unknown names still see all of them).
    """
    import typer.main

    app.registered_commands, app.registered_groups = _flat(app)
    if only is not None:
        commands = [c for c in app.registered_commands if _name_of(c) == only]
        groups = [g for g in app.registered_groups if _group_name(g) == only]
        if commands or groups:
            app.registered_commands, app.registered_groups = commands, groups
    return typer.main.get_command(app)


def _flat(app: "typer.Typer") -> tuple[list[Any], list[Any]]:
    """The commands and named groups of ``app``, those of apps added without a name (a
    plugin's top-level commands: ``app.add_typer(cli.app)``) taken in, so that each can be
    converted alone. The apps themselves are left as they are (they live at module level)."""
    commands, groups = list(app.registered_commands), []
    for info in app.registered_groups:
        if _group_name(info) or info.typer_instance is None:
            groups.append(info)
        else:
            more_commands, more_groups = _flat(info.typer_instance)
            commands += more_commands
            groups += more_groups
    return commands, groups


def _name_of(info: Any) -> str:
    if info.name:
        return str(info.name)
    return str(info.callback.__name__).lower().replace("_", "-")


def _group_name(info: Any) -> str:
    name = info.name or getattr(getattr(info, "typer_instance", None), "info", None)
    if isinstance(name, str):
        return name
    return str(getattr(name, "name", None) or "")


def _click_exception(exc: BaseException) -> str | None:
    """``usage`` or ``error`` when ``exc`` is one of Click's own exceptions."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "UsageError" in names:
        return "usage"
    if "ClickException" in names:
        return "error"
    return None


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--version"], ["-V"]):  # answer before loading Typer and the plugins
        print(f"nself {__version__}")
        return 0
    args, debug = _take_debug(args)
    if args in (["--version"], ["-V"]):  # `nself --debug --version`: nothing to debug
        print(f"nself {__version__}")
        return 0
    state.debug, state.emitted_json = debug, False
    as_json = "--json" in args[: args.index("--") if "--" in args else len(args)]
    try:
        if len(args) == 1 and not args[0].startswith("-"):
            # `nself build`, run after every edit: nothing to parse, so a plugin may run it
            # before Typer and the plugins' commands are imported (~60 ms of start-up).
            from .plugins import make_manager

            code = make_manager().hook.run_bare_command(name=args[0])
            if code is not None:
                return code
        command = get_command(make_app(), _command_name(args))
        return command.main(args=args, prog_name="nself", standalone_mode=False)
    except NselfError as exc:
        if debug:
            _traceback()
        problems = getattr(exc, "problems", None)
        _fail([(p.message, p.hint) for p in problems or [exc]], exc.exit_code, as_json)
    except BrokenPipeError:  # the reader went away (`nself ... | head`): nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except (KeyboardInterrupt, EOFError):
        console.error("interrupted")
        sys.exit(130)
    except OSError as exc:  # a folder where a file belongs, permissions, a full disk...
        if debug:
            _traceback()
        reason = (exc.strerror or str(exc)).lower()
        where = f"cannot use {exc.filename}: " if exc.filename else ""
        message = f"{where}{reason}" if where else f"{type(exc).__name__}: {reason}"
        hint = (
            "fix that path (a folder where a file belongs, permissions, free space) "
            "and run the command again; --debug shows where it happened"
        )
        _fail([(message, hint)], 1, as_json)
    except Exception as exc:
        kind = _click_exception(exc)
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # the help was shown already
        if kind == "usage":
            ctx = getattr(exc, "ctx", None)
            path = ctx.command_path if ctx is not None else "nself"
            _fail([(exc.format_message(), f"see `{path} --help`")], 2, as_json)  # type: ignore[attr-defined]
        if kind == "error":
            _fail([(exc.format_message(), None)], getattr(exc, "exit_code", 1), as_json)  # type: ignore[attr-defined]
        if type(exc).__name__ == "Abort":
            _fail([("aborted", None)], 1, as_json)
        if debug:
            _traceback()
        unexpected = f"unexpected {type(exc).__name__}: {exc}"
        _fail([(unexpected, "rerun with --debug for details")], 1, as_json)


def _fail(problems: list[tuple[str, str | None]], code: int, as_json: bool) -> NoReturn:
    """Report a failure: ``error:``/``hint:`` lines on stderr and, when ``--json`` was asked
    for and the command has not answered yet, ``{"ok": false, "error", "hint", "problems"}``
    on stdout, so a script always gets an object to read; then exit with ``code``."""
    for message, hint in problems:
        console.error(message, hint)
    if as_json and not state.emitted_json:
        console.emit_json(
            {
                "ok": False,
                "error": problems[0][0],
                "hint": problems[0][1],
                "problems": [{"level": "error", "message": m, "hint": h} for m, h in problems],
            }
        )
    sys.exit(code)


def _take_debug(args: list[str]) -> tuple[list[str], bool]:
    """``args`` without ``--debug``, and whether it was there: it is accepted anywhere on
    the command line (``nself build --debug``, as the error hints suggest), except after
    ``--``, where the words belong to another program (``nself exec db -- cmd --debug``)."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args, False
    return [a for a in args[:end] if a != "--debug"] + args[end:], True


def _traceback() -> None:
    """The traceback for --debug, with secret values masked like all other output."""
    import traceback

    from .redact import scrub

    sys.stderr.write(scrub(traceback.format_exc()))
