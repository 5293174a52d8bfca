"""Writing a build's plan to disk: what changed, the project locked, each file replaced
atomically, and the manifest of what nself wrote (so a later build removes only its own
files)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nself import __version__
from nself.atomic import write_atomic
from nself.build import STATE_DIR
from nself.build import Plan as _Plan
from nself.errors import NselfError, fs_error
from nself.model import GeneratedFile, Shown
from nself.plugins import make_manager

from .config import Config
from .locks import exclusive

MANIFEST = f"{STATE_DIR}/build.json"
Plan = _Plan[Config]  # what a build would write, the config the SDK's


@dataclass(repr=False)
class BuildResult(Shown):
    plan: Plan
    changes: dict[str, str]  # path -> created | changed | removed


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _as_bytes(item: GeneratedFile) -> bytes:
    return item.content.encode("utf-8") if isinstance(item.content, str) else item.content


def read_manifest(project: Path) -> dict[str, Any]:
    """The last build's manifest (``files``: path -> sha256); empty when there is none."""
    path = project / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if not isinstance(data.get("files"), dict):
        data["files"] = {}
    return data


def diff(project: Path, files: list[GeneratedFile]) -> dict[str, str]:
    """What writing ``files`` would change on disk: path -> created | changed | removed."""
    import stat

    changes: dict[str, str] = {}
    try:
        for item in files:
            target = project / item.path
            try:
                st = target.stat()
            except FileNotFoundError:
                changes[item.path] = "created"
                continue
            except NotADirectoryError:
                raise _folder_is_a_file(project, item.path) from None
            if not stat.S_ISREG(st.st_mode):
                kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
                raise NselfError(
                    f"{item.path} is {kind}, where nself build writes a file",
                    f"move {item.path} out of the way and run the build again",
                )
            if not item.keep_existing and (
                (st.st_mode & 0o777) != item.mode or target.read_bytes() != _as_bytes(item)
            ):
                changes[item.path] = "changed"
    except OSError as exc:
        raise fs_error(exc, "read", project) from exc
    wanted = {f.path for f in files}
    for old, digest in read_manifest(project)["files"].items():
        path = project / old
        # A file replaced or edited since nself wrote it is someone's own now: left alone.
        if old not in wanted and path.is_file() and _digest(path.read_bytes()) == digest:
            changes[old] = "removed"
    return dict(sorted(changes.items()))


def _folder_is_a_file(project: Path, rel: str) -> NselfError:
    """The error for a generated file whose folder (or one above it) is a file."""
    for parent in reversed(Path(rel).parents[:-1]):
        if (project / parent).exists() and not (project / parent).is_dir():
            return NselfError(
                f"{parent.as_posix()} is a file, where nself build needs a folder (for {rel})",
                f"move {parent.as_posix()} out of the way and run the build again",
            )
    return NselfError(f"cannot reach {rel}: a folder on its path is not a folder")


def write(result: Plan, check: bool = False) -> BuildResult:
    """Write a build's ``result``; with ``check`` only say what is out of date.

    Each file is replaced atomically, after ``build_writing`` (which keeps what it replaces
    for ``rollback``)."""
    root = result.root  # the project folder, or the target's own (build_folder)
    changes = diff(root, result.files)
    if check or not changes:
        return BuildResult(result, changes)
    with writing(root):
        pm = result.config.pluginmanager or make_manager(result.config.project_dir)
        previous = read_manifest(root)
        pm.hook.build_writing(project_dir=root, changes=changes, manifest=previous)
        for item in result.files:
            if item.path in changes:
                write_atomic(root / item.path, item.content, item.mode)
        for path, what in changes.items():
            if what == "removed":
                (root / path).unlink()
        digests = {
            f.path: _digest((root / f.path).read_bytes() if f.keep_existing else _as_bytes(f))
            for f in result.files
        }
        manifest = {"nself": __version__, "env": result.config.env, "files": digests}
        write_atomic(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return BuildResult(result, changes)


@contextmanager
def writing(project: Path, doing: str = "write") -> Iterator[None]:
    """The project locked for writing (one build or rollback at a time), and an OSError
    while ``doing`` turned into one line naming the path."""
    try:
        with exclusive(
            project / STATE_DIR / "build.lock",
            "another `nself build` is writing this project right now",
            "wait for it to finish and run the command again",
        ):
            yield
    except OSError as exc:
        raise fs_error(exc, doing, project) from exc
