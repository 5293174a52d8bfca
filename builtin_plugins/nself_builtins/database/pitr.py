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

The server is controlled through ``ClusterControl``; ``LocalCluster`` drives a server whose
data folder is on this machine (``pg_ctl``).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nself_sdk import NselfError, UsageError

from .backups import _fsync_dir, _temp_in, _write_json, file_sha256
from .transport import Transport

if TYPE_CHECKING:
    from .target import Target

Say = Callable[[str], None]
DATA_VAR = "NSELF_PITR_DATA_DIR"
ARCHIVE_VAR = "NSELF_PITR_ARCHIVE"
OS_USER_VAR = "NSELF_PG_OS_USER"
COMMIT = re.compile(r"desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")
SEGMENT = re.compile(r"^[0-9A-F]{24}$")
RECOVERY_KEYS = ("restore_command", "recovery_target_time", "recovery_target_action")


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


START_WAL = re.compile(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)$", re.MULTILINE)
START_TIMELINE = re.compile(r"^START TIMELINE: (\d+)$", re.MULTILINE)


def backup_label(base_tar: Path) -> dict[str, Any]:
    """The first WAL segment and timeline of a base backup, from its ``backup_label``.

    ``pg_basebackup`` sends ``backup_label`` as the first member of the tar, so this reads
    only the start of the file.
    """
    try:
        with tarfile.open(base_tar, mode="r|") as tar:  # a stream: stop at the member
            for member in tar:
                if member.name.lstrip("./") == "backup_label" and member.isfile():
                    handle = tar.extractfile(member)
                    text = handle.read().decode("utf-8", "replace") if handle else ""
                    break
            else:
                text = ""
    except (OSError, tarfile.TarError):
        text = ""
    wal = START_WAL.search(text)
    if wal is None:
        raise NselfError(
            f"cannot read the start of base backup {base_tar.name} (no backup_label in it)",
            "the file is missing or damaged; take a new base backup",
        )
    timeline = START_TIMELINE.search(text)
    return {
        "start_wal": wal.group(1),
        "timeline": int(timeline.group(1)) if timeline else int(wal.group(1)[:8], 16),
    }


# -- the server ---------------------------------------------------------------------------------


class ClusterControl(Protocol):
    """Stopping and starting the server and replacing its data folder."""

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def replace_data(self, base_tar: Path, settings: dict[str, str]) -> Path:
        """Move the data folder aside (returned), unpack ``base_tar``, add ``settings``."""
        ...

    def put_back(self, aside: Path) -> None:
        """Undo ``replace_data``: the kept folder becomes the data folder again."""
        ...

    def log_tail(self) -> str: ...

    def prepare_archive(self, path: str) -> None:
        """Create the archive folder, owned by the server's user."""
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
        result = self._pg_ctl("-m", "fast", "-w", "-t", "120", "stop")
        if result.returncode != 0 and "Is server running?" not in result.stderr:
            raise NselfError(f"could not stop the server: {result.stderr.strip()}")

    def start(self) -> None:
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

    def replace_data(self, base_tar: Path, settings: dict[str, str]) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        aside = self.data_dir.with_name(f"{self.data_dir.name}.pre-pitr-{stamp}")
        os.rename(self.data_dir, aside)
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
        return aside

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
    ) -> None:
        if shutil.which("docker") is None:
            raise NselfError("recovering the stack's database needs the docker CLI")
        state = self._state()
        argv = ["docker", "run", "--rm", "-i", "--network", "none", "--user", "root"]
        argv += ["--volumes-from", state.container, "--entrypoint", "sh"]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        argv += [state.image, "-c", script]
        with stdin.open("rb") if stdin else open(os.devnull, "rb") as source:
            result = subprocess.run(argv, stdin=source, capture_output=True, check=False)
        if result.returncode != 0:
            err = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise NselfError(f"changing the data volume failed: {err[-1] if err else 'error'}")

    def replace_data(self, base_tar: Path, settings: dict[str, str]) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        aside = f"{STACK_PGDATA}.pre-pitr-{stamp}"
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
        return Path(aside)

    def put_back(self, aside: Path) -> None:
        self._helper(f'rm -rf "{STACK_PGDATA}" && mv "{aside}" "{STACK_PGDATA}"')

    def prepare_archive(self, path: str) -> None:
        folder = shlex.quote(path)
        self._helper(f"mkdir -p {folder} && chown postgres:postgres {folder} && chmod 700 {folder}")

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

    def commits(self, name: str) -> list[str]:
        """The COMMIT timestamps (UTC text) recorded in segment ``name``."""
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

    def commits(self, name: str) -> list[str]:
        program = str(self.bindir / "pg_waldump") if self.bindir else "pg_waldump"
        result = subprocess.run(
            [program, "--rmgr=Transaction", str(self.folder / name)],
            capture_output=True,
            text=True,
            env={**os.environ, "TZ": "UTC", "PGTZ": "UTC"},
            check=False,
        )
        return COMMIT.findall(result.stdout)

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
            _fsync_dir(self.folder)


@dataclass
class ServerArchive:
    """An archive only the server's machine sees (the stack's volume): read with its tools."""

    transport: Transport
    path: str

    def names(self) -> list[str]:
        result = self.transport.run_tool("sh", ["-c", f"ls -1 {shlex.quote(self.path)} || true"])
        return sorted(n for n in result.stdout.decode().split() if SEGMENT.match(n))

    def commits(self, name: str) -> list[str]:
        segment = shlex.quote(f"{self.path}/{name}")
        result = self.transport.run_tool(
            "sh", ["-c", f"TZ=UTC pg_waldump --rmgr=Transaction {segment} 2>/dev/null; true"]
        )
        return COMMIT.findall(result.stdout.decode("utf-8", "replace"))

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
class Plan:
    target: datetime
    base: dict[str, Any]
    earliest: datetime
    newest: datetime
    segments: int
    notes: list[str] = field(default_factory=list)

    def describe(self) -> list[str]:
        return [
            f"recover the whole cluster to {fmt(self.target)}",
            f"  recoverable window: {fmt(self.earliest)} .. {fmt(self.newest)}"
            " (newest restorable point: last commit in the WAL archive)",
            f"  start from base backup {self.base['name']} (ended {self.base['end'][:19]})",
            f"  replay archived WAL ({self.segments} segments in the archive)",
            "  the server stops; its current data folder is kept aside, not deleted",
            *self.notes,
        ]


class Pitr:
    def __init__(
        self, transport: Transport, control: ClusterControl, archive: Archive, base_dir: Path
    ) -> None:
        self.transport = transport
        self.control = control
        self.archive = archive
        self.base_dir = base_dir

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
        with _temp_in(self.base_dir, name) as (tmp, handle):
            self.transport.run_tool(
                "pg_basebackup",
                ["-D", "-", "-Ft", "-X", "fetch", "--checkpoint=fast", "--no-password"],
                stdout=handle,
            )
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            end = datetime.now(UTC)
            label = backup_label(tmp)
            manifest = {
                "name": name,
                "start": started.astimezone(UTC).isoformat(),
                "end": end.isoformat(),
                "size": tmp.stat().st_size,
                "sha256": file_sha256(tmp),
                "start_wal": label["start_wal"],
                "timeline": label["timeline"],
            }
            os.replace(tmp, self.base_dir / name)
            _fsync_dir(self.base_dir)
        _write_json(self.base_dir / f"{name}.json", manifest)
        return manifest

    # -- the window --------------------------------------------------------------------------
    def _segments(self) -> list[str]:
        return self.archive.names()

    def flush_wal(self) -> None:
        """Close the current WAL segment and wait until the archiver stored it."""
        with self.transport.connect(autocommit=True) as conn:
            row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
            assert row is not None
            wanted = str(row[0])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if wanted in self.archive.names():
                    return
                failed = conn.execute(
                    "SELECT last_failed_wal, last_failed_time FROM pg_stat_archiver"
                ).fetchone()
                time.sleep(0.2)
            detail = f" (last failure: {failed[0]} at {failed[1]})" if failed and failed[0] else ""
            raise NselfError(
                f"WAL segment {wanted} did not reach the archive within 60s{detail}",
                "check the server log for archive_command errors",
            )

    def newest_point(self) -> datetime | None:
        """The last commit time found in the archived WAL."""
        for name in reversed(self._segments()[-6:]):
            stamps = self.archive.commits(name)
            if stamps:
                return datetime.fromisoformat(stamps[-1]).replace(tzinfo=UTC)
        return None

    def plan(self, target: datetime, flush: bool = True) -> Plan:
        bases = self.base_backups()
        if not bases:
            raise NselfError(
                "there is no base backup to recover from",
                "take one with `nself db pitr backup` (and regularly after that)",
            )
        if flush:
            self.flush_wal()
        newest = self.newest_point()
        earliest = datetime.fromisoformat(bases[0]["end"])
        if newest is None:
            raise NselfError("the WAL archive holds no commits yet", "write something first")
        if target < earliest or target > newest:
            raise NselfError(
                f"{fmt(target)} is outside the recoverable window {fmt(earliest)} .. {fmt(newest)}",
                "pick a time inside the window (the newest restorable point is the last "
                "commit archived)",
            )
        usable = [b for b in bases if datetime.fromisoformat(b["end"]) <= target]
        return Plan(
            target=target,
            base=usable[-1],
            earliest=earliest,
            newest=newest,
            segments=len(self._segments()),
        )

    def recover(self, plan: Plan, say: Say = lambda _: None) -> Path:
        base = self.base_dir / plan.base["name"]
        if not base.is_file() or file_sha256(base) != plan.base["sha256"]:
            raise NselfError(
                f"base backup {plan.base['name']} is missing or damaged; nothing was changed",
                "take a new base backup; older points in time may be lost",
            )
        archive = shlex.quote(self.archive.path.rstrip("/"))
        settings = {
            "restore_command": f'cp {archive}/"%f" "%p"',
            "recovery_target_time": plan.target.isoformat(),
            "recovery_target_action": "promote",
        }
        say("stopping the server")
        self.control.stop()
        aside = self.control.replace_data(base, settings)
        say(f"recovering (the previous data folder is kept at {aside})")
        try:
            self.control.start()
            self._wait_promoted()
        except BaseException as exc:
            detail = self.control.log_tail()
            self.control.stop()
            self.control.put_back(aside)
            self.control.start()
            message = exc.message if isinstance(exc, NselfError) else str(exc)
            raise NselfError(
                f"recovery failed, the previous data is back in place: {message}"
                + (f" ({detail})" if detail and detail not in message else ""),
            ) from None
        with self.transport.connect(autocommit=True) as conn:
            for key in RECOVERY_KEYS:
                conn.execute(f"ALTER SYSTEM RESET {key}")
            conn.execute("SELECT pg_reload_conf()")
        return aside

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
