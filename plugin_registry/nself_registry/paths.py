"""Where nself keeps per-user state: outside every project, never in a repository."""

from __future__ import annotations

import os
from pathlib import Path

HOME_VAR = "NSELF_HOME"
CACHE_VAR = "NSELF_CACHE_DIR"


def home() -> Path:
    """Per-user config: ``$NSELF_HOME``, else ``$XDG_CONFIG_HOME/nself`` or ``~/.config/nself``."""
    if os.environ.get(HOME_VAR):
        return Path(os.environ[HOME_VAR])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nself"


def cache() -> Path:
    """Downloaded indexes and archives: ``$NSELF_CACHE_DIR``, else the XDG cache folder."""
    if os.environ.get(CACHE_VAR):
        return Path(os.environ[CACHE_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nself"


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed and return it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
