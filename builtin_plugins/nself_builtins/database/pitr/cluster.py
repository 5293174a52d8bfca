"""The server whose data folder a recovery replaces, behind ``ClusterControl``:
``LocalCluster`` drives a server whose data folder is on this machine (``pg_ctl``),
``StackCluster`` the stack's postgres service (the runtime, and a helper container of the
same image for its data volume)."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nself_sdk import NselfError

from ..journal import checkpoint

DATA_VAR = "NSELF_PITR_DATA_DIR"
OS_USER_VAR = "NSELF_PG_OS_USER"


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
