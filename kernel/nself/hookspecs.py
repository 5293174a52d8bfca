"""The hooks nself plugins implement: markers and docstrings only (``docs/hooks.md``
documents each; a test keeps the two in step). What the kernel does not define is typed
``object`` (services, routes, migrations, a runtime, findings); implementations annotate
them with the SDK's types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from typer import Typer

    from .config import Config
    from .model import GeneratedFile, Problem, Setting
    from .model import Stack as _Stack

    Stack = _Stack[Any, Any, Any]

hookspec = pluggy.HookspecMarker("nself")


@hookspec
def declare_settings() -> list[Setting]:
    """Declare the env variables this plugin reads: defaults apply where no env file sets
    a name; secrets are generated, redacted and checked for strength outside dev."""


@hookspec
def load_extra_plugins(project_dir: Path) -> list[object]:
    """Return more plugin objects for the project in ``project_dir``, registered exactly
    like entry-point plugins: how plugins that are not Python packages (bundles) join in."""


@hookspec
def prepare_env_files(project_dir: Path, env: str) -> None:
    """Bring the env files of the project in ``project_dir`` up to date before nself reads
    them for the target ``env`` (e.g. give an older project a file a newer nself reads)."""


@hookspec
def validate_config(config: Config) -> list[Problem]:
    """Check ``config`` before anything is generated; any error stops the build."""


@hookspec
def contribute_env(config: Config) -> dict[str, str]:
    """Return derived values (e.g. connection URLs) for ``.env.computed``; a value a user
    set in an env file wins over them."""


@hookspec
def contribute_services(config: Config) -> list[object]:
    """Return the containers this plugin adds to the stack for ``config``."""


@hookspec
def contribute_nginx(config: Config) -> list[object]:
    """Return the public virtual hosts this plugin's services need."""


@hookspec
def contribute_migrations(config: Config) -> list[object]:
    """Return this plugin's schema migrations; they run in dependency order."""


@hookspec
def contribute_files(config: Config, stack: Stack) -> list[GeneratedFile]:
    """Render files from the checked ``stack`` (compose file, nginx config, init scripts)."""


@hookspec
def validate_files(config: Config, stack: Stack, files: list[GeneratedFile]) -> list[Problem]:
    """Check the files the build is about to write (in memory, nothing written yet); any
    error stops the build."""


@hookspec
def build_writing(project_dir: Path, changes: dict[str, str], manifest: dict[str, Any]) -> None:
    """React to ``nself build`` being about to write ``changes`` (path -> created, changed
    or removed) in ``project_dir``, locked; ``manifest`` is the build on disk. Raise to
    stop the build with nothing written."""


@hookspec(firstresult=True)
def build_folder(project_dir: Path, env: str) -> str | None:
    """Where the build for target ``env`` writes, inside ``project_dir``'s ``.nself/``
    (e.g. ``.nself/targets/staging``); ``None``: the project folder. First answer wins."""


@hookspec(firstresult=True)
def rollback_build(project_dir: Path, manifest: dict[str, Any]) -> dict[str, str] | None:
    """Undo the last build in ``project_dir`` (locked; ``manifest`` is the current one) for
    ``nself build --rollback``: return path -> restored or removed, raise ``NselfError``
    to refuse; the first answer wins."""


@hookspec
def contribute_urls(config: Config, stack: Stack) -> dict[str, str]:
    """Return the address people open for each service this plugin makes public
    (service or route name -> URL), for the build summary, ``nself urls`` and ``status``."""


@hookspec
def contribute_scaffold() -> list[GeneratedFile]:
    """Return the files ``nself init`` adds where they do not exist yet (never overwritten):
    the folders this plugin reads from, with a README or ``.gitignore``."""


@hookspec(firstresult=True)
def validate_license(config: Config, plugin: str, tier: str, purpose: str) -> Problem | bool | None:
    """Decide whether the licensed ``plugin`` of ``tier`` may be used (``purpose="build"``)
    or installed (``purpose="install"``, which may be stricter): ``True`` allows it, a
    warning ``Problem`` allows it with a warning, an error ``Problem`` says why not. The
    first non-``None`` answer wins; when none answers, the ``license`` plugin refuses it."""


@hookspec(firstresult=True)
def provide_runtime(config: Config) -> object | None:
    """Return the container runtime (``nself_sdk.Runtime``) that runs ``config``'s stack,
    or ``None`` when your engine is not selected; the first answer wins. Construct
    cheaply: connect on first use."""


@hookspec
def rotate_secret(config: Config, name: str, value: str, runtime: object) -> bool | None:
    """Give secret ``name`` its new ``value`` inside the running stack (e.g. ``ALTER
    ROLE``), before ``nself secrets rotate`` writes it; ``runtime`` is ``None`` without an
    engine. Return ``True`` when handled, ``None`` when not yours; raise to refuse."""


@hookspec(firstresult=True)
def drop_plugin_database(config: Config, plugin: str, role: str, schema: str) -> list[str] | None:
    """Drop what a plugin bundle kept in the database (its ``schema``, what its ``role``
    owns, its migration history, the role) for ``nself plugin remove --delete-data``.
    Return one line per thing dropped, ``None`` without a database; raise to refuse."""


@hookspec
def stack_started(config: Config, stack: Stack, runtime: object, services: list[str]) -> None:
    """React to ``nself start`` having brought ``services`` up (e.g. reload a server whose
    configuration changed); raise ``NselfError`` only when the stack cannot be used."""


@hookspec
def diagnose(config: Config, stack: Stack, deep: bool, only: list[str]) -> list[object]:
    """Check what this plugin owns for ``nself doctor``: one ``Finding`` per check named in
    ``only`` (all when empty); slow checks only with ``deep``. Never raise."""


@hookspec
def harden(config: Config, stack: Stack, live: bool) -> list[object]:
    """Check what this plugin owns for ``nself harden``: one ``Finding`` per check, with its
    ``layer`` and any safe ``fix``. Without ``live`` read only the configuration and the
    project's files (builds outside dev run it so). Never raise."""


@hookspec(firstresult=True)
def run_bare_command(name: str) -> int | None:
    """Run ``nself NAME`` given alone before the command line is parsed (no Typer): return
    its exit status, or ``None`` to leave it to the registered command."""


@hookspec
def register_commands(app: Typer) -> None:
    """Add commands or command groups to the ``nself`` Typer ``app``; keep imports of heavy
    libraries inside the command functions."""
