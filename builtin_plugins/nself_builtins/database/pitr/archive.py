"""The WAL archive, wherever it lives: ``LocalArchive`` is a folder on this machine,
``ServerArchive`` one only the server's machine sees (the stack's volume), read with the
server's tools."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nself_sdk import NselfError

from ..durable import fsync_dir
from ..transport import Transport
from .wal import COMMIT, SEGMENT

ARCHIVE_VAR = "NSELF_PITR_ARCHIVE"


class Archive(Protocol):
    """Read access to the WAL archive, wherever it lives."""

    @property
    def path(self) -> str:
        """The archive folder as the server sees it (for restore_command)."""
        ...

    def names(self) -> list[str]: ...

    def commits(self, name: str) -> list[tuple[str, str]]:
        """The commits recorded in segment ``name``: (LSN, UTC time text)."""
        ...

    def read(self, name: str) -> str | None:
        """A small file of the archive (a timeline's ``.history``), or None."""
        ...

    def files(self) -> dict[str, int]:
        """Every file of the archive folder with its size; an error if there is no folder."""
        ...

    def remove(self, names: list[str]) -> None:
        """Delete these files of the archive (names only, never paths)."""
        ...


def _missing_archive(path: str) -> NselfError:
    return NselfError(
        f"the WAL archive folder {path} does not exist",
        "switch archiving on with `nself db pitr enable` (or check " + ARCHIVE_VAR + ")",
    )


@dataclass
class LocalArchive:
    """An archive folder on this machine."""

    folder: Path
    bindir: Path | None = None

    @property
    def path(self) -> str:
        return str(self.folder)

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if SEGMENT.match(p.name))

    def commits(self, name: str) -> list[tuple[str, str]]:
        program = str(self.bindir / "pg_waldump") if self.bindir else "pg_waldump"
        result = subprocess.run(
            [program, "--rmgr=Transaction", str(self.folder / name)],
            capture_output=True,
            text=True,
            env={**os.environ, "TZ": "UTC", "PGTZ": "UTC"},
            check=False,
        )
        return COMMIT.findall(result.stdout)

    def read(self, name: str) -> str | None:
        try:
            return (self.folder / name).read_text(errors="replace")
        except OSError:
            return None

    def files(self) -> dict[str, int]:
        if not self.folder.is_dir():
            raise _missing_archive(self.path)
        found = {}
        for entry in os.scandir(self.folder):
            if entry.is_file(follow_symlinks=False):
                found[entry.name] = entry.stat(follow_symlinks=False).st_size
        return found

    def remove(self, names: list[str]) -> None:
        for name in names:
            if "/" in name or name in ("", ".", ".."):
                raise NselfError(f"refusing to delete {name!r} from the archive")
            (self.folder / name).unlink(missing_ok=True)
        if names:
            fsync_dir(self.folder)


@dataclass
class ServerArchive:
    """An archive only the server's machine sees (the stack's volume): read with its tools."""

    transport: Transport
    path: str

    def names(self) -> list[str]:
        result = self.transport.run_tool("sh", ["-c", f"ls -1 {shlex.quote(self.path)} || true"])
        return sorted(n for n in result.stdout.decode().split() if SEGMENT.match(n))

    def commits(self, name: str) -> list[tuple[str, str]]:
        segment = shlex.quote(f"{self.path}/{name}")
        result = self.transport.run_tool(
            "sh", ["-c", f"TZ=UTC pg_waldump --rmgr=Transaction {segment} 2>/dev/null; true"]
        )
        return COMMIT.findall(result.stdout.decode("utf-8", "replace"))

    def read(self, name: str) -> str | None:
        if not re.fullmatch(r"[0-9A-Za-z._-]+", name):
            return None
        result = self.transport.run_tool(
            "sh", ["-c", f"cat {shlex.quote(self.path + '/' + name)}"], check=False
        )
        return result.stdout.decode("utf-8", "replace") if result.returncode == 0 else None

    def files(self) -> dict[str, int]:
        folder = shlex.quote(self.path)
        # one exec: sizes of every plain file (stat -c works with coreutils and busybox)
        script = (
            f"[ -d {folder} ] || exit 3; cd {folder} && "
            "ls -1A | xargs -r stat -c '%F|%s|%n' -- 2>/dev/null; true"
        )
        result = self.transport.run_tool("sh", ["-c", script], check=False)
        if result.returncode == 3:
            raise _missing_archive(self.path)
        if result.returncode != 0:
            raise NselfError(f"cannot list the WAL archive {self.path}")
        found = {}
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            kind, _, rest = line.partition("|")
            size, _, name = rest.partition("|")
            if kind.startswith("regular") and size.isdigit() and name:
                found[name] = int(size)
        return found

    def remove(self, names: list[str]) -> None:
        for name in names:
            if not re.fullmatch(r"[0-9A-Za-z._-]+", name) or name in (".", ".."):
                raise NselfError(f"refusing to delete {name!r} from the archive")
        folder = shlex.quote(self.path)
        for start in range(0, len(names), 400):  # a bounded command line per exec
            chunk = " ".join(names[start : start + 400])
            self.transport.run_tool("sh", ["-c", f"cd {folder} && rm -f -- {chunk}"])
