"""The files of a bundle folder and their hashes (light: used on every project load)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# Never packed or hashed: version control, editor and Python droppings, the author's tests
# and packed archives.
SKIP_NAMES = frozenset({".git", ".hg", ".svn", "__pycache__", ".pytest_cache", ".DS_Store"})
SKIP_TOP = frozenset({"tests", "dist"})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(root: Path) -> list[Path]:
    """Files of a bundle folder, sorted, without version-control and test droppings."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_NAMES
            and not d.startswith(".")
            and not (rel == Path(".") and d in SKIP_TOP)
        )
        for name in sorted(filenames):
            if name in SKIP_NAMES or name.startswith(".") or name.endswith(".pyc"):
                continue
            found.append(Path(dirpath, name))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def every_file(root: Path) -> list[Path]:
    """Every file and link under ``root``, hidden ones included (what an archive held)."""
    found = [
        Path(dirpath, name)
        for dirpath, dirnames, filenames in os.walk(root)
        for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]
    ]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def digest_listing(root: Path, paths: list[Path]) -> dict[str, str]:
    """Relative path -> sha256 of the content (or the target of a link)."""
    out: dict[str, str] = {}
    for path in paths:
        rel = path.relative_to(root).as_posix()
        out[rel] = "link:" + os.readlink(path) if path.is_symlink() else sha256_file(path)
    return out
