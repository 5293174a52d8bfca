"""Where the kept builds live: ``.nself/generations/NNNNNN/`` holding ``build.json`` (the
manifest of the build before) and ``files/`` (what the next build replaced). The
``generations`` plugin writes them; the secrets audit checks the ``.env.computed`` they
keep."""

from __future__ import annotations

from pathlib import Path

GENERATIONS = ".nself/generations"
MANIFEST_NAME = "build.json"
FILES_DIR = "files"


def generations(project: Path, complete: bool = True) -> list[Path]:
    """The kept generations, oldest first; only complete ones (with their manifest) unless
    ``complete`` is false. An incomplete one is a leftover of an older nself whose build
    failed while keeping it."""
    root = project / GENERATIONS
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.isdigit() and (not complete or (p / MANIFEST_NAME).is_file())
    )


def kept_files(project: Path, name: str) -> list[Path]:
    """The copies of the project file ``name`` the kept generations hold, oldest first."""
    return [g / FILES_DIR / name for g in generations(project, complete=False)]
