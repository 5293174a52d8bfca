"""The project's layered env files, for plugins that read or edit them (``nself env``,
``nself secrets``): which files a target reads, their parser and quoting, the build's state
files."""

import os
from pathlib import Path

from nself.atomic import write_atomic
from nself.build import STATE_DIR
from nself.envfiles import (
    COMPUTED,
    ENVIRONMENTS,
    RESERVED,
    SECRETS,
    SECRETS_FILES,
    Entry,
    canonical_env,
    check_private,
    layer_files,
    parse_text,
    quote,
    read_layers,
    read_text,
    secrets_file,
)
from nself.errors import ConfigError, UsageError

from .writer import MANIFEST


def current_env_file(project: Path) -> Path:
    return project / ".nself" / "env"


def target_env(project: Path, requested: str | None = None) -> str:
    """``--env`` beats ``NSELF_ENV`` beats the last ``nself env switch`` beats dev."""
    if requested is not None:  # `--env ''` too: a usage error, not dev
        try:
            return canonical_env(requested, "--env")
        except ConfigError as exc:
            raise UsageError(exc.message, exc.hint) from None
    if os.environ.get("NSELF_ENV"):
        return canonical_env(os.environ["NSELF_ENV"], "NSELF_ENV")
    marker = current_env_file(project)
    if marker.is_file():
        where = str(marker.relative_to(project))
        return canonical_env(marker.read_text(encoding="utf-8").strip(), where)
    return "dev"


__all__ = [
    "COMPUTED",
    "ENVIRONMENTS",
    "MANIFEST",
    "RESERVED",
    "SECRETS",
    "SECRETS_FILES",
    "STATE_DIR",
    "Entry",
    "canonical_env",
    "check_private",
    "current_env_file",
    "layer_files",
    "parse_text",
    "quote",
    "read_layers",
    "read_text",
    "secrets_file",
    "target_env",
    "write_atomic",
]
