"""Errors the CLI turns into one line plus a hint, and the one table of exit codes.

Every command exits with a code of this table, whoever wrote it: the kernel maps an
error's class to its code (``NselfError`` 1, ``UsageError`` 2, the SDK's ``NotConfirmed`` 4), and a
command that reports an outcome (a check, a start) exits with the constant for it.
``scripts/gen-reference`` writes the table into docs/reference/commands.md.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# The stack runs but is degraded: a service that is not core failed and was isolated, or
# is unhealthy; the core services are up.
EXIT_DEGRADED = 3
EXIT_NOT_CONFIRMED = 4
EXIT_INTERRUPTED = 130

# (code, meaning): the reference's table, in this order.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done; what was checked is healthy"),
    (
        EXIT_FAILED,
        "failed (`error:` and `hint:` on stderr), or a check found a problem: a core service "
        "failed to start, is unhealthy or is stopped (`start`, `restart`, `health`), an "
        "error finding "
        "(`doctor`, `harden`, `install`, `secrets audit`, `ssl status`, `plugin lint`, "
        "`db migrate status`), "
        "generated files out of date (`build --check`)",
    ),
    (
        EXIT_USAGE,
        "usage error: an unknown command, option, service, check or name; a value the "
        "option does not take",
    ),
    (
        EXIT_DEGRADED,
        "degraded: the core services run, but one that is not core (optional, plugin, "
        "custom, monitoring) failed and was isolated (`start`, `restart`), or is unhealthy, "
        "degraded or stopped (`health`); an optional service stopped on purpose (`nself "
        "admin stop`) is not expected to run and counts for nothing",
    ),
    (
        EXIT_NOT_CONFIRMED,
        "not confirmed, nothing changed: the command needs a confirmation it did not get "
        "(`--confirm` or `--yes`, or a yes on a terminal), or the answer was no",
    ),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C, or the input ended at a question)"),
)
# Commands whose exit status is another program's: `exec` (the command's), `db shell`
# (psql's). Listed under the table.
PASSED_THROUGH = ("exec", "db shell")


class NselfError(Exception):
    """A failure the user can act on: shown as ``error: message`` and ``hint: hint``."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(NselfError):
    """Invalid project configuration; the message names the file and line when known."""


class UsageError(NselfError):
    """The command was called wrongly (exit code 2)."""

    exit_code = EXIT_USAGE


def fs_error(exc: OSError, doing: str, project: Path | None = None) -> NselfError:
    """An OSError as one line naming the path (relative to ``project`` when inside it)."""
    path = str(exc.filename or "")
    if path and project is not None and Path(path).is_relative_to(project):
        path = Path(path).relative_to(project).as_posix()
    if path and isinstance(exc, IsADirectoryError):
        message = f"{path} is a folder, where nself needs a file"
    elif path and isinstance(exc, (FileExistsError, NotADirectoryError)):
        message = f"{path} (or a folder above it) is a file, where nself needs a folder"
    else:
        reason = (exc.strerror or str(exc)).lower()
        message = f"cannot {doing} {path}: {reason}" if path else f"cannot {doing}: {reason}"
    return NselfError(
        message,
        "fix the path (move what is in the way, check permissions and free space) "
        "and run the command again",
    )
