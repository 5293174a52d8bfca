"""A real OpenSSH server on 127.0.0.1 for the deploy tests: the "remote" host is this
machine, reached over SSH as root, with its own Docker engine and Compose v2."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from docker_helpers import free_port

SSHD = "/usr/sbin/sshd"


@dataclass
class SshServer:
    port: int
    key: Path  # the client's private key
    known_hosts: Path  # pins the server's host key


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nself-test", "-f", str(path)],
        check=True,
    )


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if os.geteuid() != 0 or not Path(SSHD).is_file() or shutil.which("ssh") is None:
        pytest.skip("needs root, openssh-server and openssh-client (scripts/test installs them)")
    folder = tmp_path_factory.mktemp("sshd")
    folder.chmod(0o700)
    _keygen(folder / "host_key")
    _keygen(folder / "client_key")
    (folder / "authorized_keys").write_bytes((folder / "client_key.pub").read_bytes())
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {folder / 'host_key'}",
                f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                f"PidFile {folder / 'sshd.pid'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation folder
    log = (folder / "sshd.log").open("w")
    daemon = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=log)
    host_key = (folder / "host_key.pub").read_text().split()
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    client = [
        "ssh", "-p", str(port), "-i", str(folder / "client_key"), "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
        "root@127.0.0.1", "true",
    ]  # fmt: skip
    deadline = time.monotonic() + 20
    while subprocess.run(client, capture_output=True).returncode != 0:
        if time.monotonic() > deadline or daemon.poll() is not None:
            daemon.kill()
            pytest.fail(f"sshd did not come up: {(folder / 'sshd.log').read_text()[-2000:]}")
        time.sleep(0.2)
    try:
        yield SshServer(port, folder / "client_key", known)
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        log.close()
