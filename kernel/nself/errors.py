"""Errors the CLI turns into one line plus a hint, and the exit codes the kernel itself
uses: the one table of every code, with its meaning, is ``nself_sdk.exitcodes``."""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
    """An OSError as one line naming the path (relative to ``project`` if inside it)."""
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
