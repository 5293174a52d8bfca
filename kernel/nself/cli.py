"""The ``nself`` command line: the root options, and the error and exit policy.

Every command comes from a plugin (``register_commands``); Typer is imported only once a
command has to be parsed."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

from . import __version__, console
from .console import state
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, NselfError, fs_error

if TYPE_CHECKING:
    import typer

HELP = "A complete, production-grade, self-hosted backend: one CLI, generated config."
_VALUE_OPTIONS = {"--project", "-C"}


def make_app() -> "typer.Typer":
    """The Typer app: the root options and every plugin's ``register_commands``."""
    import typer

    from .plugins import make_manager

    app = typer.Typer(
        name="nself",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    def print_version(asked: bool) -> None:
        if asked:  # eager: before Click asks for a command (`nself -C x --version`)
            typer.echo(f"nself {__version__}")
            raise typer.Exit()

    @app.callback()
    def root(
        debug: Annotated[
            bool, typer.Option("--debug", help="Show tracebacks (secrets masked).")
        ] = False,
        project: Annotated[
            Path | None, typer.Option("--project", "-C", help="Project folder.")
        ] = None,
        version: Annotated[
            bool,
            typer.Option(
                "--version", "-V", help="Print the version.", callback=print_version, is_eager=True
            ),
        ] = False,
    ) -> None:
        state.debug = state.debug or debug  # `main` takes --debug from anywhere in argv
        state.project = project

    make_manager().hook.register_commands(app=app)
    return app


def get_command(app: "typer.Typer", only: str | None = None) -> Any:
    """The Click command of ``app``; with ``only``, just that command or group (converting
    them all costs start-up time; help and unknown names still see all of them)."""
    import typer.main

    app.registered_commands, app.registered_groups = _flat(app)
    if only is not None:
        commands = [c for c in app.registered_commands if _command_name(c) == only]
        groups = [g for g in app.registered_groups if _group_name(g) == only]
        if commands or groups:
            app.registered_commands, app.registered_groups = commands, groups
    return typer.main.get_command(app)


def _flat(app: "typer.Typer") -> tuple[list[Any], list[Any]]:
    """The commands and named groups of ``app`` and of the apps added to it without a name
    (a plugin's top-level commands), so that each can be converted alone."""
    commands, groups = list(app.registered_commands), []
    for info in app.registered_groups:
        if _group_name(info) or info.typer_instance is None:
            groups.append(info)
        else:
            more_commands, more_groups = _flat(info.typer_instance)
            commands += more_commands
            groups += more_groups
    return commands, groups


def _command_name(info: Any) -> str:
    return str(info.name or info.callback.__name__.lower().replace("_", "-"))


def _group_name(info: Any) -> str:
    """A group's name, given to ``add_typer`` or to its ``Typer(name=...)``; "" for none."""
    name = info.name or (info.typer_instance.info.name if info.typer_instance else None)
    return name if isinstance(name, str) else ""  # Typer's unset values are placeholders


def main(argv: list[str] | None = None) -> Any:
    args, debug = _take_debug(sys.argv[1:] if argv is None else list(argv))
    if args in (["--version"], ["-V"]):  # answered before loading Typer and the plugins
        print(f"nself {__version__}")
        return 0
    state.debug, state.emitted_json = debug, False
    as_json = "--json" in args[: args.index("--") if "--" in args else len(args)]
    try:
        if len(args) == 1 and not args[0].startswith("-"):
            # `nself build` after every edit: a plugin may run it without Typer (~60 ms).
            from .plugins import make_manager

            code = make_manager().hook.run_bare_command(name=args[0])
            if code is not None:
                return code
        command = get_command(make_app(), _first_word(args))
        return command.main(args=args, prog_name="nself", standalone_mode=False)
    except NselfError as exc:
        problems = getattr(exc, "problems", None) or [exc]
        _fail([(p.message, p.hint) for p in problems], exc.exit_code, as_json, debug)
    except BrokenPipeError:  # the reader went away (`nself ... | head`): nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_FAILED)
    except (KeyboardInterrupt, EOFError):
        console.error("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except OSError as exc:  # a folder where a file belongs, permissions, a full disk...
        error = fs_error(exc, "use")
        _fail([(error.message, error.hint)], EXIT_FAILED, as_json, debug)
    except Exception as exc:
        # Click's own exceptions, told by name: a bare command never imports Click.
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "NoArgsIsHelpError" in kinds:
            sys.exit(EXIT_USAGE)  # the help was shown already
        if "UsageError" in kinds:
            ctx = getattr(exc, "ctx", None)
            path = ctx.command_path if ctx is not None else "nself"
            _fail([(exc.format_message(), f"see `{path} --help`")], EXIT_USAGE, as_json)  # type: ignore[attr-defined]
        if "ClickException" in kinds:
            _fail([(exc.format_message(), None)], getattr(exc, "exit_code", EXIT_FAILED), as_json)  # type: ignore[attr-defined]
        if "Abort" in kinds:
            # click's prompts raise it on Ctrl-C or at the end of the input
            _fail([("interrupted", None)], EXIT_INTERRUPTED, as_json)
        unexpected = f"unexpected {type(exc).__name__}: {exc}"
        _fail([(unexpected, "rerun with --debug for details")], EXIT_FAILED, as_json, debug)


def _first_word(args: list[str]) -> str | None:
    """The command's name: the first word that is not a root option or its value."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _fail(
    problems: list[tuple[str, str | None]], code: int, as_json: bool, trace: bool = False
) -> NoReturn:
    """``error:``/``hint:`` lines (after the masked traceback with ``trace``) and, with
    ``--json`` and no answer yet, ``{"ok": false, ...}`` on stdout; exit with ``code``."""
    if trace:
        import traceback

        from .redact import scrub

        sys.stderr.write(scrub(traceback.format_exc()))
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
    """``args`` without ``--debug``, and whether it was there: anywhere, except after ``--``
    (``nself exec db -- cmd --debug``)."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args, False
    return [a for a in args[:end] if a != "--debug"] + args[end:], True
