"""An environment's server (staging, prod), reached with the OpenSSH client; nothing is
installed on it but Docker with Compose v2. Its address comes from the ``DEPLOY_*``
settings (see docs/deploy.md).

Every remote step is a short POSIX ``sh`` script sent as one command line; arguments are
quoted here, so nothing from the env files is ever interpreted by the remote shell. One
multiplexed connection serves all steps of a command::

    from nself_builtins.shared.remote import Server

    server = Server.from_config(config)
    try:
        done = server.run('compose --project-name "$1" ps', config.project_name)
    finally:
        server.close()
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from nself_sdk import Config, NselfError

# Exit codes our remote scripts use for conditions they explain on stderr.
EXIT_EXPLAINED = 40
EXIT_LOCKED = 41
SSH_FAILED = 255

PRELUDE = r"""
set -eu
umask 077
compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"
  elif command -v docker-compose >/dev/null 2>&1; then docker-compose "$@"
  else echo "Docker Compose v2 is not installed on this server" >&2; exit 40
  fi
}
"""


@dataclass
class Server:
    """One environment's server, from its DEPLOY_* settings."""

    env: str
    host: str
    user: str
    port: int
    path: str
    key: str = ""
    known_hosts: str = ""
    connect_timeout: int = 15
    _control: str = field(default="", repr=False)

    @classmethod
    def from_config(cls, config: Config) -> Server:
        host = config.text("DEPLOY_HOST").strip()
        env_file = ".env.prod" if config.env == "prod" else f".env.{config.env}"
        if not host:
            raise NselfError(
                f"no server to deploy {config.env} to: DEPLOY_HOST is not set",
                f"set DEPLOY_HOST (and DEPLOY_USER, DEPLOY_PATH if needed) in {env_file}",
            )
        if not is_host(host):
            raise NselfError(f"{config.where('DEPLOY_HOST')}: DEPLOY_HOST is not a host name")
        path = config.text("DEPLOY_PATH").strip() or f"/opt/nself/{config.project_name}"
        if not path.startswith("/"):
            raise NselfError(
                f"{config.where('DEPLOY_PATH')}: DEPLOY_PATH must be an absolute path",
                "e.g. DEPLOY_PATH=/opt/nself/myapp",
            )
        return cls(
            env=config.env,
            host=host,
            user=config.text("DEPLOY_USER", "root").strip() or "root",
            port=config.int("DEPLOY_PORT", 22),
            path=path,
            key=_local_path(config, "DEPLOY_SSH_KEY"),
            known_hosts=_local_path(config, "DEPLOY_KNOWN_HOSTS"),
        )

    def describe(self) -> str:
        port = "" if self.port == 22 else f":{self.port}"
        return f"{self.user}@{self.host}{port}:{self.path}"

    def _argv(self) -> list[str]:
        ssh = shutil.which("ssh")
        if ssh is None:
            raise NselfError(
                "the OpenSSH client (ssh) is not installed on this machine",
                "install it (Debian: apt-get install openssh-client)",
            )
        if not self._control:
            self._control = tempfile.mkdtemp(prefix="nself-ssh-")
        argv = [
            ssh,
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout}",
            "-o",
            "ServerAliveInterval=15",
            # Pinned keys only with DEPLOY_KNOWN_HOSTS; else trust on first use. A changed
            # host key is always refused.
            "-o",
            "StrictHostKeyChecking=" + ("yes" if self.known_hosts else "accept-new"),
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self._control}/%C",
            "-o",
            "ControlPersist=60",
        ]
        if self.key:
            argv += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        return [*argv, "-l", self.user, "--", self.host]

    def _remote(self, script: str, args: tuple[str, ...]) -> str:
        return " ".join(
            ["sh", "-c", shlex.quote(PRELUDE + script), "nself", *map(shlex.quote, args)]
        )

    def stream(
        self,
        script: str,
        *args: str,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        tty: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Like ``run``, with the remote output streamed to ``stdout`` (or the terminal) and
        ``stdin`` fed from a file; stderr is captured."""
        argv = self._argv()
        if tty:
            argv.insert(1, "-t")
        done = subprocess.run(
            [*argv, self._remote(script, args)],
            stdin=stdin if stdin is not None else (None if tty else subprocess.DEVNULL),
            stdout=stdout,
            stderr=None if tty else subprocess.PIPE,
            check=False,
        )
        if done.returncode == SSH_FAILED and not tty:
            said = (done.stderr or b"").decode("utf-8", "replace")
            self._explain(subprocess.CompletedProcess(done.args, SSH_FAILED, "", said))
        return done

    def popen(self, script: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``script`` on the server and hand back the process, to read its output
        while it runs (``logs --follow``); its stderr is captured."""
        return subprocess.Popen(
            [*self._argv(), self._remote(script, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def explain_exit(self, code: int, stderr: bytes) -> None:
        """Raise the one-line error for a finished ``popen`` process that failed."""
        said = stderr.decode("utf-8", "replace")
        self._explain(subprocess.CompletedProcess([], code, "", said))
        if code != 0:
            raise NselfError(f"the {self.env} server: {_last_line(said) or f'exit status {code}'}")

    def tunnel(self, host: str, port: int) -> tuple[int, subprocess.Popen[bytes]]:
        """Forward a free local port to ``host:port`` as seen from the server; returns the
        port and the ssh process (terminate it when done).

        The tunnel is a connection of its own, never a client of the shared one: a client
        of an existing master hands the forward to the master and exits at once, so its
        exit would say nothing (it was once taken for a failed connection under load), and
        the forward would outlive ``terminate``. So here the process exiting means the
        tunnel failed, and ssh says why on stderr.

        Its ssh runs ``cat`` on the server, fed by a pipe only this process holds: when this
        process ends, even killed, the pipe closes, ``cat`` ends and so does the tunnel."""
        import socket
        import time

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            local = int(probe.getsockname()[1])
        argv = self._argv()
        forward = [
            # ssh takes the first value of an option: these come before the shared ones
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            f"127.0.0.1:{local}:{host}:{port}",
        ]
        process = subprocess.Popen(
            [*argv[:1], *forward, *argv[1:], "cat >/dev/null"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # ssh gives up by itself (ConnectTimeout, a refused key...); this only bounds a
        # handshake that neither finishes nor fails, with room for a loaded machine.
        deadline = time.monotonic() + 2 * self.connect_timeout
        while time.monotonic() < deadline:
            code = process.poll()
            if code is not None:
                said = (process.stderr.read() if process.stderr else b"").decode("utf-8", "replace")
                self._explain(subprocess.CompletedProcess([], SSH_FAILED, "", said))
            try:
                socket.create_connection(("127.0.0.1", local), timeout=1).close()
                return local, process
            except OSError:
                time.sleep(0.1)
        process.terminate()
        process.wait(timeout=10)
        raise NselfError(
            f"the tunnel to the {self.env} server did not open within {2 * self.connect_timeout}s",
            f"check the connection: ssh -p {self.port} {self.user}@{self.host}",
        )

    def _explain(self, result: subprocess.CompletedProcess[str]) -> None:
        """Raise the one-line errors for a failed connection or an explained refusal."""
        if result.returncode == SSH_FAILED:
            said = [x for x in result.stderr.strip().splitlines() if x.strip()]
            reason = said[-1] if said else "ssh failed"
            raise NselfError(
                f"cannot reach the {self.env} server {self.user}@{self.host}:{self.port}: {reason}",
                "check DEPLOY_HOST, DEPLOY_PORT, DEPLOY_USER and DEPLOY_SSH_KEY; "
                f"try: ssh -p {self.port} {self.user}@{self.host}",
            )
        if result.returncode == EXIT_EXPLAINED:
            said = [x for x in result.stderr.strip().splitlines() if x.strip()]
            reason = said[-1] if said else "not ready"
            docker = "docker" in reason.lower() or "compose" in reason.lower()
            raise NselfError(
                f"the {self.env} server {self.host}: {reason}",
                "install Docker Engine with the Compose v2 plugin on the server"
                if docker
                else f"see `nself releases --env {self.env}`",
            )

    def run(
        self,
        script: str,
        *args: str,
        stdin: bytes | None = None,
        timeout: float | None = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with ``args`` ($1...) on the server; a broken connection raises."""
        try:
            done = subprocess.run(
                [*self._argv(), self._remote(script, args)],
                input=stdin,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise NselfError(
                f"the {self.env} server did not answer within {timeout:.0f}s",
                f"check the connection: ssh -p {self.port} {self.user}@{self.host}",
            ) from None
        result = subprocess.CompletedProcess(
            done.args,
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
        )
        self._explain(result)
        return result

    def close(self) -> None:
        """End the shared connection and forget its socket."""
        if not self._control:
            return
        ssh = shutil.which("ssh")
        if ssh is not None:
            subprocess.run(
                [
                    ssh,
                    "-o",
                    f"ControlPath={self._control}/%C",
                    "-O",
                    "exit",
                    "-p",
                    str(self.port),
                    "-l",
                    self.user,
                    self.host,
                ],
                capture_output=True,
                check=False,
                timeout=10,
            )
        shutil.rmtree(self._control, ignore_errors=True)
        self._control = ""


def is_host(value: str) -> bool:
    """A value ssh takes as a host, not as an option or shell text."""
    return not value.startswith("-") and not any(c.isspace() or c in "'\"`$;" for c in value)


def _last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def _local_path(config: Config, name: str) -> str:
    value = config.text(name).strip()
    if not value:
        return ""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = config.project_dir / path
    if not path.is_file():
        raise NselfError(
            f"{config.where(name)}: {name} {value} does not exist",
            "DEPLOY_KNOWN_HOSTS pins the server's key: e.g. ssh-keyscan -p PORT HOST > FILE"
            if name == "DEPLOY_KNOWN_HOSTS"
            else "point it at the private key file SSH should use",
        )
    return str(path)
