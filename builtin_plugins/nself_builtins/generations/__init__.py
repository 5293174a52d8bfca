"""The previous builds, kept for ``nself build --rollback``.

Before a build replaces files (``build_writing``), what it replaces and the manifest of
the build on disk go into ``.nself/generations/NNNNNN/`` (five kept, mode 0700). A
generation is filled in a temporary folder and renamed, so it is complete or absent.
``rollback_build`` puts the latest one back and consumes it; the project's first build has
no build before it and is not rolled back, and a damaged kept manifest is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nself_builtins.shared.generations import FILES_DIR, GENERATIONS, MANIFEST_NAME, generations
from nself_sdk import NselfError, hookimpl, write_atomic
from nself_sdk.envfiles import MANIFEST

KEEP = 5


def _dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


@hookimpl
def build_writing(project_dir: Path, changes: dict[str, str], manifest: dict[str, Any]) -> None:
    """Keep what this build replaces, and the manifest of the build before, in a numbered
    folder. Files about to be changed or removed are hard-linked (writes replace files by
    rename, so the link keeps the old content; copied where links are impossible). Files
    the build leaves alone need no copy: a rollback finds them as they were."""
    import shutil

    root = project_dir / GENERATIONS
    numbered = generations(project_dir, complete=False)
    number = int(numbered[-1].name) + 1 if numbered else 1
    root.mkdir(parents=True, mode=0o700, exist_ok=True)
    root.chmod(0o700)  # the kept files include .env.computed
    for leftover in root.glob(".*.tmp"):  # a build killed while keeping its generation
        shutil.rmtree(leftover, ignore_errors=True)
    # Filled in a temporary folder and renamed: a generation is complete or absent, never
    # a folder without its manifest (which a rollback would read as "no files").
    staging = root / f".{number:06d}.tmp"
    staging.mkdir(mode=0o700)
    try:
        for rel, what in changes.items():
            if what == "created":
                continue
            dest = staging / FILES_DIR / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(project_dir / rel, dest)
            except OSError:
                shutil.copy2(project_dir / rel, dest)
        write_atomic(staging / MANIFEST_NAME, _dump(manifest))
        os.rename(staging, root / f"{number:06d}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    complete = generations(project_dir)
    stale = complete[: max(0, len(complete) - KEEP)]
    stale += [p for p in numbered if not (p / MANIFEST_NAME).is_file()]
    for old in stale:
        shutil.rmtree(old, ignore_errors=True)


def _kept_manifest(project: Path, generation: Path) -> dict[str, Any]:
    """The manifest a generation kept; a damaged one is refused, never read as "no files"
    (which would make the rollback remove every generated file)."""
    path = generation / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise NselfError(
            f"the kept build {path.relative_to(project)} is damaged: nothing was rolled back",
            f"remove {generation.relative_to(project)} to roll back to the build before it",
        )
    return data


@hookimpl
def rollback_build(project_dir: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """Undo the last build that changed files: path -> restored | removed.

    Files it replaced or removed come back, files it created go, the manifest of the build
    before it is restored; the kept generation is consumed (a second rollback goes one
    build further back). The project's first build has no build before it to go back to:
    refused, since undoing it would only delete the stack (and the dev certificate and
    key, which a browser may trust by now).
    """
    import shutil

    kept_builds = generations(project_dir)
    if not kept_builds:
        raise NselfError(
            "there is no previous build to roll back to",
            "every `nself build` that changes files keeps what it replaced",
        )
    latest = kept_builds[-1]
    kept = _kept_manifest(project_dir, latest)
    stored_root = latest / FILES_DIR
    stored = {
        p.relative_to(stored_root).as_posix(): p for p in stored_root.rglob("*") if p.is_file()
    }
    if not kept["files"]:  # the last build was the project's first
        where = stored_root.relative_to(project_dir).as_posix()
        raise NselfError(
            "there is no earlier build to roll back to: the last build was the project's first",
            f"nothing was changed; the files that build replaced are kept in {where}/"
            if stored
            else "nothing was changed; delete the generated files by hand to start over",
        )
    done: dict[str, str] = {}
    for rel in sorted(set(manifest["files"]) - set(kept["files"]) - set(stored)):
        if (project_dir / rel).is_file():
            (project_dir / rel).unlink()
            done[rel] = "removed"
    for rel, source in sorted(stored.items()):
        write_atomic(project_dir / rel, source.read_bytes(), source.stat().st_mode & 0o777)
        done[rel] = "restored"
    write_atomic(project_dir / MANIFEST, _dump(kept))
    shutil.rmtree(latest)
    return dict(sorted(done.items()))
