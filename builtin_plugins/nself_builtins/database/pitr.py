"""Point-in-time recovery: continuous WAL archiving plus base backups.

* ``archive_command()`` is what PostgreSQL runs for every finished WAL segment: copy into
  the archive, never overwriting a segment with different content.
* ``Pitr.base_backup()`` streams ``pg_basebackup -Ft -X fetch`` (a self-contained tar) into
  the backup folder with a manifest (sha256, start/end time).
* ``Pitr.plan(target)`` forces the current WAL segment into the archive, finds the window
  (end of the oldest base backup .. last commit in the archive) and the base backup to
  start from; ``Pitr.recover(plan)`` stops the server, keeps the old data folder aside,
  unpacks the base backup, sets ``recovery_target_time`` and waits for the promotion. Any
  failure puts the old data folder back.
* A recovery writes its steps to a journal (``.recovery.json`` in the base backup folder)
  and holds a lock while it works; ``Pitr.settle`` (every ``nself db`` command, ``nself
  doctor``) finishes or undoes one that was killed.

The server is controlled through ``ClusterControl``; ``LocalCluster`` drives a server whose
data folder is on this machine (``pg_ctl``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nself_sdk import NselfError, UsageError

from .durable import clean_leftovers, file_sha256, fsync_dir, held, temp_in, write_json
from .journal import checkpoint
from .transport import Transport

if TYPE_CHECKING:
    from .target import Target

Say = Callable[[str], None]
DATA_VAR = "NSELF_PITR_DATA_DIR"
ARCHIVE_VAR = "NSELF_PITR_ARCHIVE"
OS_USER_VAR = "NSELF_PG_OS_USER"
COMMIT = re.compile(
    r"lsn: ([0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: COMMIT "
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC"
)
END_POINT = re.compile(r"write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)")
KEPT_FOLDERS = 1  # data folders moved aside by recoveries: the newest stays, older ones go
SEGMENT = re.compile(r"^[0-9A-F]{24}$")
RECOVERY_KEYS = (
    "restore_command",
    "recovery_target_time",
    "recovery_target_action",
    "recovery_target_timeline",
)
JOURNAL = ".recovery.json"  # a recovery's steps, in the base backup folder
JOURNAL_LOCK = ".recovery.lock"  # held by the recovering process (flock)


def archive_command(archive_dir: str) -> str:
    """The ``archive_command`` that copies a finished WAL segment into ``archive_dir``.

    A segment already in the archive is never overwritten: the same content is accepted
    (PostgreSQL may retry after a crash), different content fails the command, so the
    server keeps the segment and retries while it logs the failure. New segments are
    written to a temp name, fsynced, then renamed.
    """
    d = shlex.quote(archive_dir.rstrip("/"))
    return (
        f'mkdir -p {d} && {{ test ! -f {d}/%f || {{ cmp -s "%p" {d}/%f; exit; }}; }} && '
        f'cp "%p" {d}/%f.part && sync {d}/%f.part && mv {d}/%f.part {d}/%f'
    )


def parse_target(text: str) -> datetime:
    """``2026-05-01 14:30:00 UTC`` (or ISO 8601 with an offset) as an aware datetime."""
    raw = text.strip()
    cleaned = re.sub(r"\s*(UTC|Z)$", "+00:00", raw, flags=re.IGNORECASE)
    try:
        when = datetime.fromisoformat(cleaned)
    except ValueError:
        raise UsageError(
            f"cannot read the time {text!r}", 'use e.g. --target "2026-05-01 14:30:00 UTC"'
        ) from None
    if when.tzinfo is None:
        raise UsageError(
            f"the time {text!r} has no time zone", 'add one, e.g. "2026-05-01 14:30:00 UTC"'
        )
    return when.astimezone(UTC)


def fmt(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def lsn(text: str) -> int:
    """``0/3000028`` as a number."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def segment_start(name: str, size: int) -> int:
    """The first LSN of WAL segment ``name`` (segments of ``size`` bytes)."""
    return (int(name[8:16], 16) * 0x1_0000_0000) + int(name[16:24], 16) * size


START_WAL = re.compile(
    r"^START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)$", re.MULTILINE
)
START_TIMELINE = re.compile(r"^START TIMELINE: (\d+)$", re.MULTILINE)


def _label(text: str, name: str) -> dict[str, Any]:
    wal = START_WAL.search(text)
    if wal is None:
        raise NselfError(
            f"cannot read the start of base backup {name} (no backup_label in it)",
            "the file is missing or damaged; take a new base backup",
        )
    timeline = START_TIMELINE.search(text)
    return {
        "start_wal": wal.group(2),
        "start_lsn": wal.group(1),
        "timeline": int(timeline.group(1)) if timeline else int(wal.group(2)[:8], 16),
    }


def backup_label(base_tar: Path) -> dict[str, Any]:
    """The first WAL segment, LSN and timeline of a base backup, from its ``backup_label``.

    ``pg_basebackup`` sends ``backup_label`` as the first member of the tar, so this reads
    only the start of the file.
    """
    text = ""
    try:
        with tarfile.open(base_tar, mode="r|") as tar:  # a stream: stop at the member
            for member in tar:
                if member.name.lstrip("./") == "backup_label" and member.isfile():
                    handle = tar.extractfile(member)
                    text = handle.read().decode("utf-8", "replace") if handle else ""
                    break
    except (OSError, tarfile.TarError):
        text = ""
    return _label(text, base_tar.name)


class _Hashing:
    """A file read through sha256 (tarfile reads it as a stream)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.handle.read(size)
        self.digest.update(data)
        return data


def read_base(base_tar: Path) -> dict[str, Any]:
    """One pass over a base backup: its sha256, ``backup_label`` and the end LSN from its
    ``backup_manifest`` (``pg_basebackup`` puts both in the tar it writes to stdout)."""
    label = ""
    end = None
    with base_tar.open("rb") as raw:
        reader = _Hashing(raw)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    name = member.name.lstrip("./")
                    if name in ("backup_label", "backup_manifest") and member.isfile():
                        handle = tar.extractfile(member)
                        text = handle.read().decode("utf-8", "replace") if handle else ""
                        if name == "backup_label":
                            label = text
                        else:
                            end = _manifest_end(text)
        except tarfile.TarError:
            pass
        while reader.read(1 << 20):
            pass
    facts = _label(label, base_tar.name)
    facts.update(sha256=reader.digest.hexdigest(), end_lsn=end)
    return facts


def _manifest_end(text: str) -> str | None:
    try:
        ranges = json.loads(text).get("WAL-Ranges") or []
        return str(ranges[-1]["End-LSN"]) if ranges else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# -- the server ---------------------------------------------------------------------------------


def _kept_name(name: str, base: str) -> bool:
    """``pgdata.pre-pitr-<time>`` (moved aside by a recovery) or ``pgdata.failed-pitr``."""
    return bool(re.fullmatch(re.escape(base) + r"\.(pre-pitr-\d{14}|failed-pitr)", name))


def _tree_size(path: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


class ClusterControl(Protocol):
    """Stopping and starting the server and replacing its data folder."""

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def aside_for(self, stamp: str) -> Path:
        """Where ``replace_data`` moves the data folder (``pgdata.pre-pitr-<stamp>``)."""
        ...

    def replace_data(self, base_tar: Path, settings: dict[str, str], aside: Path) -> None:
        """Move the data folder to ``aside``, unpack ``base_tar``, add ``settings``; on a
        failure the data folder is put back before the error is raised."""
        ...

    def put_back(self, aside: Path) -> None:
        """Undo ``replace_data``: the kept folder becomes the data folder again."""
        ...

    def log_tail(self) -> str: ...

    def prepare_archive(self, path: str) -> None:
        """Create the archive folder, owned by the server's user."""
        ...

    def kept_folders(self) -> dict[str, int]:
        """Data folders earlier recoveries moved aside (name: bytes), oldest first."""
        ...

    def remove_kept(self, names: list[str]) -> None:
        """Delete these kept data folders (names from ``kept_folders`` only)."""
        ...


@dataclass
class LocalCluster:
    """A server whose data folder is on this machine, run by ``pg_ctl``."""

    data_dir: Path
    bindir: Path | None = None
    os_user: str | None = None

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        program = str(self.bindir / "pg_ctl") if self.bindir else "pg_ctl"
        argv = [program, "-D", str(self.data_dir), *args]
        if self.os_user and os.geteuid() == 0:
            argv = ["runuser", "-u", self.os_user, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    @property
    def logfile(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.pitr.log"

    def stop(self) -> None:
        if not self.data_dir.is_dir():
            return  # moved aside by a recovery that was killed: no server runs on it
        result = self._pg_ctl("-m", "fast", "-w", "-t", "120", "stop")
        if result.returncode != 0 and "Is server running?" not in result.stderr:
            raise NselfError(f"could not stop the server: {result.stderr.strip()}")

    def start(self) -> None:
        if self._pg_ctl("status").returncode == 0:
            return  # already running
        if not self.logfile.exists():
            self.logfile.touch()
            self._chown(self.logfile)
        result = self._pg_ctl("-l", str(self.logfile), "-w", "-t", "300", "start")
        if result.returncode != 0:
            raise NselfError(
                "the server did not start: " + (self.log_tail() or result.stderr.strip())
            )

    def _chown(self, path: Path) -> None:
        if not (self.os_user and os.geteuid() == 0):
            return
        entry = pwd.getpwnam(self.os_user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.chown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid)

    def aside_for(self, stamp: str) -> Path:
        return self.data_dir.with_name(f"{self.data_dir.name}.pre-pitr-{stamp}")

    def replace_data(self, base_tar: Path, settings: dict[str, str], aside: Path) -> None:
        os.rename(self.data_dir, aside)
        checkpoint("pitr-moved")
        try:
            self.data_dir.mkdir(mode=0o700)
            with tarfile.open(base_tar) as tar:
                tar.extractall(self.data_dir, filter="data")
            for keep in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
                if (aside / keep).is_file() and not (self.data_dir / keep).is_file():
                    shutil.copy2(aside / keep, self.data_dir / keep)
            (self.data_dir / "recovery.signal").touch()
            auto = self.data_dir / "postgresql.auto.conf"
            lines = [
                line
                for line in (auto.read_text().splitlines() if auto.exists() else [])
                if line.split("=")[0].strip() not in settings
            ]
            lines += [f"{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in settings.items()]
            auto.write_text("\n".join(lines) + "\n")
            for stale in ("postmaster.pid", "backup_label.old"):
                (self.data_dir / stale).unlink(missing_ok=True)
            os.chmod(self.data_dir, 0o700)
            self._chown(self.data_dir)
        except BaseException:
            self.put_back(aside)
            raise

    def prepare_archive(self, path: str) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        if self.os_user and os.geteuid() == 0:
            entry = pwd.getpwnam(self.os_user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)

    def put_back(self, aside: Path) -> None:
        if self.data_dir.exists():
            failed = self.data_dir.with_name(self.data_dir.name + ".failed-pitr")
            shutil.rmtree(failed, ignore_errors=True)
            os.rename(self.data_dir, failed)
        os.rename(aside, self.data_dir)

    def kept_folders(self) -> dict[str, int]:
        found = {}
        base = self.data_dir.name
        for path in sorted(self.data_dir.parent.glob(f"{base}.*")):
            if _kept_name(path.name, base) and path.is_dir() and not path.is_symlink():
                found[path.name] = _tree_size(path)
        return found

    def remove_kept(self, names: list[str]) -> None:
        for name in names:  # every name checked before anything is deleted
            if not _kept_name(name, self.data_dir.name):
                raise NselfError(f"refusing to delete {name!r}: not a kept data folder")
        for name in names:
            path = self.data_dir.parent / name
            if path.is_dir() and not path.is_symlink():  # gone already: nothing to do
                shutil.rmtree(path)

    def log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        important = [line for line in lines if "FATAL" in line or "ERROR" in line]
        return "; ".join((important or lines)[-2:])


STACK_DATA = "/var/lib/postgresql/data"
STACK_PGDATA = f"{STACK_DATA}/pgdata"
STACK_ARCHIVE = f"{STACK_DATA}/wal-archive"


HELPER_LABEL = "org.nself.pitr-helper-of"  # = the postgres container whose volume it changes


@dataclass
class StackCluster:
    """The stack's postgres service: stopped and started through the runtime; its data
    volume is changed by a short-lived helper container of the same image (Docker)."""

    transport: Any  # StackTransport
    service: str = "postgres"

    def _state(self) -> Any:
        runtime = self.transport.runtime()
        state = next((s for s in runtime.status() if s.name == self.service), None)
        if state is None or not state.container:
            raise NselfError(f"the {self.service} service has no container", "run `nself start`")
        return state

    def stop(self) -> None:
        self.transport.runtime().stop([self.service])

    def start(self) -> None:
        result = self.transport.runtime().up([self.service], wait=True, timeout=600)
        self.transport._address = None  # a restarted container may get a new address
        if not result.ok:
            raise NselfError(
                f"{self.service} did not come back: {result.failed.get(self.service, '')}"
            )

    def _helper(
        self, script: str, stdin: Path | None = None, env: dict[str, str] | None = None
    ) -> str:
        if shutil.which("docker") is None:
            raise NselfError("recovering the stack's database needs the docker CLI")
        state = self._state()
        label = f"{HELPER_LABEL}={state.container}"
        self._wait_for_helpers(label)
        argv = ["docker", "run", "--rm", "-i", "--network", "none", "--user", "root"]
        argv += ["--label", label, "--volumes-from", state.container, "--entrypoint", "sh"]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        argv += [state.image, "-c", script]
        with stdin.open("rb") if stdin else open(os.devnull, "rb") as source:
            result = subprocess.run(argv, stdin=source, capture_output=True, check=False)
        if result.returncode != 0:
            err = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise NselfError(f"changing the data volume failed: {err[-1] if err else 'error'}")
        return result.stdout.decode("utf-8", "replace")

    @staticmethod
    def _wait_for_helpers(label: str) -> None:
        """A helper of a killed nself keeps running (killing the docker client does not stop
        its container): wait until it is done before changing the same data folder again."""
        found = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label={label}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if found:
            from nself_sdk.console import warn

            warn("waiting for a helper container of an interrupted recovery to finish")
            subprocess.run(["docker", "wait", *found], capture_output=True, check=False)

    def aside_for(self, stamp: str) -> Path:
        return Path(f"{STACK_PGDATA}.pre-pitr-{stamp}")

    def replace_data(self, base_tar: Path, settings: dict[str, str], aside: Path) -> None:
        lines = "\n".join(f"{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in settings.items())
        script = f"""set -e
P={STACK_PGDATA}; A={aside}
mv "$P" "$A"
mkdir "$P"
tar -x -C "$P"
for f in postgresql.conf pg_hba.conf pg_ident.conf; do
  [ -f "$P/$f" ] || [ ! -f "$A/$f" ] || cp -p "$A/$f" "$P/$f"
done
rm -f "$P/postmaster.pid" "$P/backup_label.old"
touch "$P/postgresql.auto.conf"
sed -i -e '/^restore_command/d' -e '/^recovery_target/d' "$P/postgresql.auto.conf"
printf '%b\\n' "$NSELF_RECOVERY" >> "$P/postgresql.auto.conf"
touch "$P/recovery.signal"
chown -R postgres:postgres "$P"
chmod 700 "$P"
"""
        try:
            self._helper(script, stdin=base_tar, env={"NSELF_RECOVERY": lines})
        except NselfError:
            back = f'rm -rf "{STACK_PGDATA}"; mv "{aside}" "{STACK_PGDATA}"'
            self._helper(f'[ ! -d "{aside}" ] || {{ {back}; }}')
            raise

    def put_back(self, aside: Path) -> None:
        self._helper(f'rm -rf "{STACK_PGDATA}" && mv "{aside}" "{STACK_PGDATA}"')

    def prepare_archive(self, path: str) -> None:
        folder = shlex.quote(path)
        self._helper(f"mkdir -p {folder} && chown postgres:postgres {folder} && chmod 700 {folder}")

    def kept_folders(self) -> dict[str, int]:
        out = self._helper(
            f'cd {STACK_DATA} && for d in pgdata.*; do [ -d "$d" ] && [ ! -L "$d" ]'
            ' && echo "$(du -sk "$d" | cut -f1) $d"; done; true'
        )
        found = {}
        for line in out.splitlines():
            size, _, name = line.partition(" ")
            if size.isdigit() and _kept_name(name, "pgdata"):
                found[name] = int(size) * 1024
        return dict(sorted(found.items()))

    def remove_kept(self, names: list[str]) -> None:
        for name in names:
            if not _kept_name(name, "pgdata"):
                raise NselfError(f"refusing to delete {name!r}: not a kept data folder")
        if names:
            self._helper(f"cd {STACK_DATA} && rm -rf -- " + " ".join(names))

    def log_tail(self) -> str:
        try:
            lines = list(self.transport.runtime().logs(self.service, tail=30))
        except NselfError:
            return ""
        important = [line for line in lines if "FATAL" in line]
        return "; ".join((important or lines)[-2:]).strip()


# -- the archive --------------------------------------------------------------------------------


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


# -- the engine ---------------------------------------------------------------------------------


@dataclass
class Span:
    """A stretch of the current timeline's history: ``timeline`` from ``start`` to ``end``
    (LSNs; ``end`` is where the history switched to the next timeline, None for the last)."""

    timeline: int
    start: int
    end: int | None
    first: datetime | None = None  # first and last commit archived in the stretch
    last: datetime | None = None

    def holds(self, position: int) -> bool:
        return position >= self.start and (self.end is None or position < self.end)


@dataclass
class Plan:
    target: datetime
    base: dict[str, Any]
    earliest: datetime
    newest: datetime
    segments: int
    to_end: bool = False  # nothing was committed after the target: replay every segment
    spans: list[Span] = field(default_factory=list)
    drop_kept: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        lines = [
            f"recover the whole cluster to {fmt(self.target)}",
            f"  recoverable window: {fmt(self.earliest)} .. {fmt(self.newest)}"
            " (newest restorable point: last commit in the WAL archive)",
            *[f"    {text}" for text in window_lines(self.spans, self.earliest)[1:]],
            f"  start from base backup {self.base['name']} (ended {self.base['end'][:19]},"
            f" timeline {self.base.get('timeline', 1)})",
            f"  replay archived WAL ({self.segments} segments on this timeline's history)"
            + (" to its end (nothing was committed after the target)" if self.to_end else ""),
            "  the server stops; its current data folder is kept aside, not deleted",
        ]
        for name, size in self.drop_kept.items():
            lines.append(
                f"  the data folder an earlier recovery kept, {name} ({size // 2**20} MiB),"
                " is deleted (one is kept: the one this recovery moves aside)"
            )
        return lines + self.notes


def window_lines(spans: list[Span], earliest: datetime | None) -> list[str]:
    """The recoverable stretches per timeline, for messages (first line: a title)."""
    lines = ["recoverable per timeline:"]
    for n, span in enumerate(spans):
        start = span.first
        if n == 0 or start is None or (earliest is not None and start < earliest):
            start = earliest if n == 0 or start is None else start
        end = span.last
        if start is None or end is None:
            lines.append(f"timeline {span.timeline}: no commit archived")
            continue
        left = "" if span.end is None else " (then a recovery branched off)"
        lines.append(f"timeline {span.timeline}: {fmt(start)} .. {fmt(max(start, end))}{left}")
    return lines


class Pitr:
    def __init__(
        self, transport: Transport, control: ClusterControl, archive: Archive, base_dir: Path
    ) -> None:
        self.transport = transport
        self.control = control
        self.archive = archive
        self.base_dir = base_dir
        self._commits: dict[str, list[tuple[int, datetime]]] = {}

    # -- switching archiving on -----------------------------------------------------------
    def enable(self, say: Say = lambda _: None) -> bool:
        """Turn WAL archiving on (ALTER SYSTEM); restarts the server when needed.

        Returns whether it restarted. Proves archiving works by archiving a segment.
        """
        from psycopg import sql

        self.control.prepare_archive(self.archive.path)
        wanted = {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": archive_command(self.archive.path),
            "archive_timeout": "60s",
        }
        with self.transport.connect(autocommit=True) as conn:
            current = {
                k: str(conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(k))).fetchone()[0])  # type: ignore[index]
                for k in wanted
            }
            for key, value in wanted.items():
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(key), sql.Literal(value)
                    )
                )
            conn.execute("SELECT pg_reload_conf()")
        restart = current["wal_level"] not in ("replica", "logical") or current[
            "archive_mode"
        ] not in ("on", "always")
        if restart:
            say("restarting PostgreSQL to turn WAL archiving on")
            self.control.stop()
            self.control.start()
        with self.transport.connect(autocommit=True) as conn:
            conn.execute("SELECT txid_current()")  # a commit: a segment to prove archiving with
        self.flush_wal()
        return restart

    # -- base backups ------------------------------------------------------------------------
    def base_backups(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.base_dir.glob("base-*.tar.json")):
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return sorted(found, key=lambda m: str(m.get("end", "")))

    def base_backup(self, say: Say = lambda _: None) -> dict[str, Any]:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o700)
        ignore = self.base_dir / ".gitignore"  # base backups hold the whole cluster
        if not ignore.exists():
            ignore.write_text("# nself: base backups stay out of version control\n*\n")
        clean_leftovers(self.base_dir, say)
        with self.transport.connect(autocommit=True) as conn:
            row = conn.execute(
                "SELECT current_setting('archive_mode'), current_setting('wal_level'), now()"
            ).fetchone()
        assert row is not None
        mode, level, started = row
        if mode not in ("on", "always") or level == "minimal":
            raise NselfError(
                f"WAL archiving is off (archive_mode={mode}, wal_level={level})",
                "turn it on with `nself db pitr enable`",
            )
        name = "base-" + datetime.now(UTC).strftime("%Y-%m-%d-%H-%M-%S") + ".tar"
        say(f"taking base backup {name}")
        with temp_in(self.base_dir, name) as (tmp, handle):
            done = self.transport.run_tool(
                "pg_basebackup",
                ["-D", "-", "-Ft", "-X", "fetch", "--checkpoint=fast", "--no-password", "-v"],
                stdout=handle,
            )
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            end = datetime.now(UTC)
            facts = read_base(tmp)
            reported = END_POINT.search(done.stderr.decode("utf-8", "replace"))
            manifest = {
                "name": name,
                "start": started.astimezone(UTC).isoformat(),
                "end": end.isoformat(),
                "size": tmp.stat().st_size,
                "sha256": facts["sha256"],
                "start_wal": facts["start_wal"],
                "start_lsn": facts["start_lsn"],
                "end_lsn": facts["end_lsn"] or (reported.group(1) if reported else None),
                "timeline": facts["timeline"],
            }
            os.replace(tmp, self.base_dir / name)
            fsync_dir(self.base_dir)
        write_json(self.base_dir / f"{name}.json", manifest)
        return manifest

    def _end_lsn(self, base: dict[str, Any]) -> int | None:
        """Where a base backup becomes consistent (manifest, else its own backup_manifest)."""
        recorded = base.get("end_lsn")
        if not recorded:
            path = self.base_dir / str(base["name"])
            try:
                recorded = read_base(path)["end_lsn"] if path.is_file() else None
            except NselfError:
                recorded = None
        return lsn(str(recorded)) if recorded else None

    # -- WAL: archiving what is pending --------------------------------------------------------
    def flush_wal(self, timeout: float = 60) -> datetime:
        """Make sure every WAL record written so far is in the archive; returns the server's
        time just before (everything committed until then is archived).

        The current segment is closed only when something was written since the last switch
        (an idle server has nothing to archive: that returns at once); then this waits for
        the archiver, failing early with its error when the archive command fails."""
        with self.transport.connect(autocommit=True) as conn:
            row = conn.execute(
                "SELECT pg_switch_wal()::text, setting::bigint, clock_timestamp()"
                " FROM pg_settings WHERE name = 'wal_segment_size'"
            ).fetchone()
            assert row is not None
            position, size, began = lsn(str(row[0])), int(row[1]), row[2]
            wanted = None
            if position % size:  # a segment was closed: it must reach the archive
                found = conn.execute("SELECT pg_walfile_name(%s::pg_lsn)", (str(row[0]),))
                wanted = str(found.fetchone()[0])  # type: ignore[index]
            deadline = time.monotonic() + timeout
            while True:
                stats = conn.execute(
                    "SELECT last_archived_wal, last_failed_wal, last_failed_time,"
                    " last_archived_time FROM pg_stat_archiver"
                ).fetchone()
                pending = self._ready(conn)
                if (wanted is None or wanted in self.archive.names()) and not pending:
                    return began.astimezone(UTC)  # type: ignore[no-any-return]
                # the archiver's latest attempt failed (since it last succeeded): failing now
                if stats and stats[2] and (stats[3] is None or stats[2] > stats[3]):
                    raise NselfError(
                        f"the archive command fails for WAL segment {stats[1]}"
                        f" (last failure {stats[2]:%H:%M:%S})",
                        "see the server log for the archive_command error (a full disk, a"
                        " missing folder, permissions)",
                    )
                if time.monotonic() > deadline:
                    raise NselfError(
                        f"WAL segment {wanted or pending[0]} did not reach the archive within"
                        f" {timeout:g}s (the archiver is behind)",
                        "check the server log and the archive's disk",
                    )
                time.sleep(0.2)

    @staticmethod
    def _ready(conn: Any) -> list[str]:
        """Segments waiting for the archiver (``.ready``), when this role may look."""
        try:
            with conn.transaction():
                rows = conn.execute(
                    "SELECT name FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'"
                    " ORDER BY name"
                ).fetchall()
        except Exception:  # not a superuser nor pg_monitor: rely on the segment alone
            return []
        return [str(r[0]).removesuffix(".ready") for r in rows]

    # -- the history of the current timeline ---------------------------------------------------
    def current_timeline(self) -> int:
        with self.transport.connect(autocommit=True) as conn:
            row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
        return int(str(row[0])[:8], 16) if row else 1

    def history(self, timeline: int) -> list[Span]:
        """The stretches of WAL that lead to ``timeline`` (its ``.history`` file)."""
        spans: list[Span] = []
        start = 0
        if timeline > 1:
            text = self.archive.read(f"{timeline:08X}.history")
            if text is None:
                raise NselfError(
                    f"the archive has no history file for timeline {timeline}"
                    f" ({timeline:08X}.history)",
                    "recovery needs it: copy it back into the archive, or take a new base backup",
                )
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0].isdigit() and "/" in parts[1]:
                    switch = lsn(parts[1])
                    spans.append(Span(int(parts[0]), start, switch))
                    start = switch
        spans.append(Span(timeline, start, None))
        return spans

    def _segments_on(self, spans: list[Span]) -> list[tuple[Span, str]]:
        """The archived segments of each stretch, in history order."""
        files = self.archive.files()
        sizes = [files[n] for n in files if SEGMENT.match(n)]
        size = max(set(sizes), key=sizes.count) if sizes else 16 << 20
        out = []
        for span in spans:
            for name in sorted(n for n in files if SEGMENT.match(n)):
                if int(name[:8], 16) != span.timeline:
                    continue
                first = segment_start(name, size)
                if first + size > span.start and (span.end is None or first < span.end):
                    out.append((span, name))
        return out

    def _segment_commits(self, name: str) -> list[tuple[int, datetime]]:
        if name not in self._commits:
            self._commits[name] = [
                (lsn(where), datetime.fromisoformat(when).replace(tzinfo=UTC))
                for where, when in self.archive.commits(name)
            ]
        return self._commits[name]

    def spans(self, timeline: int | None = None) -> tuple[list[Span], int]:
        """The current history with the first and last archived commit of each stretch,
        read from the archive as a whole (newest segments first); and the segment count."""
        spans = self.history(self.current_timeline() if timeline is None else timeline)
        segments = self._segments_on(spans)
        for span in spans:
            mine = [name for owner, name in segments if owner is span]
            for name in reversed(mine):  # the last commit: from the newest segment back
                inside = [t for at, t in self._segment_commits(name) if span.holds(at)]
                if inside:
                    span.last = inside[-1]
                    break
            if span.last is None:
                continue
            for name in mine:  # the first commit: from the oldest segment on
                inside = [t for at, t in self._segment_commits(name) if span.holds(at)]
                if inside:
                    span.first = inside[0]
                    break
        return spans, len(segments)

    def newest_point(self) -> datetime | None:
        """The last commit archived on the current timeline's history."""
        spans, _count = self.spans()
        lasts = [s.last for s in spans if s.last is not None]
        return max(lasts) if lasts else None

    def usable(self, spans: list[Span]) -> tuple[list[dict[str, Any]], list[str]]:
        """Base backups this history can recover from (a base backup on a timeline the
        history left must have become consistent before the branch point)."""
        ok: list[dict[str, Any]] = []
        skipped: list[str] = []
        by_timeline = {span.timeline: span for span in spans}
        for base in self.base_backups():
            span = by_timeline.get(int(base.get("timeline") or 1))
            if span is None:
                skipped.append(f"{base['name']} (timeline {base.get('timeline')}, abandoned)")
                continue
            if span.end is not None:
                end = self._end_lsn(base)
                if end is None or end > span.end:
                    skipped.append(
                        f"{base['name']} (taken on timeline {span.timeline} after the point"
                        " this history branched off)"
                    )
                    continue
            ok.append(base)
        return ok, skipped

    def window(self) -> tuple[datetime | None, datetime | None, list[Span], list[str]]:
        """(earliest, newest restorable point, the stretches, base backups left out).

        Never inverted: when nothing was committed since the newest usable base backup,
        the window ends where that backup does."""
        spans, _count = self.spans()
        bases, skipped = self.usable(spans)
        if not bases:
            return None, None, spans, skipped
        ends = [datetime.fromisoformat(str(b["end"])) for b in bases]
        lasts = [s.last for s in spans if s.last is not None]
        newest = max([*lasts, max(ends)])
        return min(ends), newest, spans, skipped

    def plan(self, target: datetime, flush: bool = True) -> Plan:
        if not self.base_backups():
            raise NselfError(
                "there is no base backup to recover from",
                "take one with `nself db pitr backup` (and regularly after that)",
            )
        archived_until = self.flush_wal() if flush else None
        spans, count = self.spans()
        bases, skipped = self.usable(spans)
        if not bases:
            raise NselfError(
                "no base backup is on this server's current history: " + "; ".join(skipped[:3]),
                "take a new base backup with `nself db pitr backup`",
            )
        ends = [datetime.fromisoformat(str(b["end"])) for b in bases]
        earliest = min(ends)
        lasts = [s.last for s in spans if s.last is not None]
        last_commit = max(lasts) if lasts else None
        # nothing was committed between the last archived commit and the flush: up to the
        # flush every point is the state after that commit (replay to the archive's end)
        newest = max([*lasts, max(ends), *([archived_until] if archived_until else [])])
        outside = (
            f"{fmt(target)} is outside the recoverable window {fmt(earliest)} .. {fmt(newest)}"
        )
        if target < earliest or target > newest:
            raise NselfError(
                outside,
                "pick a time inside the window (the newest restorable point is the last "
                "commit archived)",
            )
        for before, after in itertools.pairwise(spans):
            gap_from = before.last or earliest
            gap_to = after.first
            if gap_to is not None and gap_from < target < gap_to:
                raise NselfError(
                    f"{fmt(target)} falls where this server's history has no data: timeline"
                    f" {before.timeline} was left at {fmt(gap_from)} (a point-in-time recovery"
                    f" branched off there) and timeline {after.timeline} begins at"
                    f" {fmt(gap_to)}; what was written on timeline {before.timeline} in"
                    " between is not on this history",
                    "pick a time before the branch or after the new timeline began ("
                    + "; ".join(window_lines(spans, earliest)[1:])
                    + ")",
                )
        usable = [b for b in bases if datetime.fromisoformat(str(b["end"])) <= target]
        kept = self.control.kept_folders()
        drop = dict(list(kept.items())[: max(0, len(kept) - (KEPT_FOLDERS - 1))])
        return Plan(
            target=target,
            base=usable[-1],
            earliest=earliest,
            newest=newest,
            segments=count,
            to_end=last_commit is None or target >= last_commit,
            spans=spans,
            drop_kept=drop,
            notes=[f"  left out: {text}" for text in skipped],
        )

    def recover(self, plan: Plan, say: Say = lambda _: None) -> Path:
        """Recover to ``plan``; returns where the previous data folder is kept.

        Each step is written to the journal first, so a recovery that is killed is finished
        or undone by the next nself (``settle``): before the data folder was replaced the
        server is started again as it was; while it was replaced the previous folder is
        put back; once the base backup is in place the recovery is completed (or, when it
        cannot be, undone)."""
        base = self.base_dir / plan.base["name"]
        if not base.is_file() or file_sha256(base) != plan.base["sha256"]:
            raise NselfError(
                f"base backup {plan.base['name']} is missing or damaged; nothing was changed",
                "take a new base backup; older points in time may be lost",
            )
        archive = shlex.quote(self.archive.path.rstrip("/"))
        settings = {
            "restore_command": f'cp {archive}/"%f" "%p"',
            "recovery_target_timeline": "latest",
        }
        if not plan.to_end:
            settings["recovery_target_time"] = plan.target.isoformat()
            settings["recovery_target_action"] = "promote"
        aside = self.control.aside_for(datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
        entry = {
            "aside": str(aside),
            "base": plan.base["name"],
            "target": plan.target.isoformat(),
            "at": datetime.now(UTC).isoformat(),
        }
        with self._journal() as step:
            step(entry, "stopping")
            say("stopping the server")
            self.control.stop()
            checkpoint("pitr-stopped")
            step(entry, "replacing")
            try:
                self.control.replace_data(base, settings, aside)
            except BaseException as exc:  # the data folder is back: run it again
                self.control.start()
                self._forget()
                message = exc.message if isinstance(exc, NselfError) else str(exc)
                raise NselfError(
                    f"recovery failed before it began, the previous data is in place and the"
                    f" server runs again: {message}",
                    "check the disk of the data folder (it must hold the base backup beside"
                    " the current data)",
                ) from None
            step(entry, "recovering")
            checkpoint("pitr-replaced")
            say(f"recovering (the previous data folder is kept at {aside})")
            try:
                self.control.start()
                self._wait_promoted()
            except BaseException as exc:
                detail = self.control.log_tail()
                self._put_back(aside)
                self._forget()
                message = exc.message if isinstance(exc, NselfError) else str(exc)
                raise NselfError(
                    f"recovery failed, the previous data is back in place: {message}"
                    + (f" ({detail})" if detail and detail not in message else ""),
                ) from None
            checkpoint("pitr-promoted")
            self._finish_recovery()
            self._forget()
        if plan.drop_kept:  # confirmed with the plan: the older kept folders go
            self.control.remove_kept(list(plan.drop_kept))
            say("deleted " + ", ".join(plan.drop_kept) + " (kept by an earlier recovery)")
        return aside

    # -- the journal: finishing or undoing a recovery that was killed --------------------------
    @contextlib.contextmanager
    def _journal(self) -> Iterator[Callable[[dict[str, Any], str], None]]:
        """Hold the recovery lock while recovering; yields ``step(entry, phase)``."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.base_dir / JOURNAL_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise NselfError(
                    "another nself is recovering this database right now", "wait for it"
                ) from None

            def step(entry: dict[str, Any], phase: str) -> None:
                write_json(self.base_dir / JOURNAL, {**entry, "phase": phase})

            yield step
        finally:
            os.close(fd)

    def _forget(self) -> None:
        (self.base_dir / JOURNAL).unlink(missing_ok=True)
        fsync_dir(self.base_dir)

    def _put_back(self, aside: Path) -> None:
        """The data folder from before the recovery, and the server running on it."""
        self.control.stop()
        self.control.put_back(aside)
        self.control.start()

    def _finish_recovery(self) -> None:
        with self.transport.connect(autocommit=True) as conn:
            for key in RECOVERY_KEYS:
                conn.execute(f"ALTER SYSTEM RESET {key}")
            conn.execute("SELECT pg_reload_conf()")

    def settle(self, say: Say = lambda _: None) -> list[str]:
        """Finish or undo a recovery that was killed (its journal without its lock)."""
        path = self.base_dir / JOURNAL
        if not path.is_file():
            return []
        if held(self.base_dir / JOURNAL_LOCK):
            return []  # a recovery is running: not ours to touch
        try:
            entry = json.loads(path.read_text())
            aside, phase, target = Path(entry["aside"]), entry["phase"], entry["target"]
        except (OSError, ValueError, KeyError, TypeError):
            text = f"{path} is unreadable: an interrupted point-in-time recovery left it"
            say(text)
            return [text]
        say("an interrupted point-in-time recovery is being settled")
        moved = aside.name in self.control.kept_folders()
        if phase == "stopping" or (phase == "replacing" and not moved):
            self.control.start()
            text = (
                "an interrupted point-in-time recovery had stopped the server before it changed"
                " anything: the server runs again, as before"
            )
        elif phase == "replacing":
            self._put_back(aside)
            text = (
                "an interrupted point-in-time recovery was undone: it was killed while it"
                f" replaced the data folder, which is back in place ({aside.name} returned);"
                " the server runs again, as before"
            )
        else:
            try:
                self.control.start()
                self._wait_promoted()
            except NselfError as exc:
                self._put_back(aside)
                text = (
                    f"an interrupted point-in-time recovery could not be finished ({exc.message}):"
                    " undone, the previous data folder is back in place and the server runs"
                )
            else:
                self._finish_recovery()
                text = (
                    f"an interrupted point-in-time recovery to {target} was finished; the"
                    f" previous data folder is kept at {aside}"
                )
        self._forget()
        say(text)
        return [text]

    def _wait_promoted(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.transport.connect(dbname="postgres", autocommit=True) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row and not row[0]:
                        return
            except NselfError:
                pass
            time.sleep(0.3)
        raise NselfError("the server did not finish recovery in time")


def pitr_for_target(target: Target) -> Pitr:
    """The PITR engine for the command's target database."""
    from .backups import Store
    from .target import URL_VAR

    store = Store.for_project(target.project, target.config)
    base_dir = store.root / "pitr"
    data = os.environ.get(DATA_VAR, "").strip()
    archive = os.environ.get(ARCHIVE_VAR, "").strip()
    if data and archive:
        bindir_raw = os.environ.get("NSELF_PG_BINDIR", "").strip()
        bindir = Path(bindir_raw) if bindir_raw else None
        return Pitr(
            transport=target.transport(),
            control=LocalCluster(Path(data), bindir, os.environ.get(OS_USER_VAR) or None),
            archive=LocalArchive(Path(archive), bindir),
            base_dir=base_dir,
        )
    if target.env == "dev" and not os.environ.get(URL_VAR, "").strip():
        transport = target.transport()
        return Pitr(
            transport=transport,
            control=StackCluster(transport),
            archive=ServerArchive(transport, STACK_ARCHIVE),
            base_dir=base_dir,
        )
    raise NselfError(
        f"point-in-time recovery of the {target.env} database is not available yet",
        f"it works for the local stack, and for a server on this machine with {DATA_VAR} "
        f"and {ARCHIVE_VAR}; otherwise restore a backup (`nself db restore`)",
    )
