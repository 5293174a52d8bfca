"""The SSH tunnel to a server's database (``nself db ... --env staging``), against a real
OpenSSH server on 127.0.0.1 (no Docker needed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sshd import SshServer, ssh_server  # noqa: F401  (the fixture)


def _server(ssh_server: SshServer, folder: Path) -> object:  # noqa: F811
    from nself_builtins.shared.remote import Server

    return Server(
        env="staging",
        host="127.0.0.1",
        user="root",
        port=ssh_server.port,
        path=str(folder),
        key=str(ssh_server.key),
        known_hosts=str(ssh_server.known_hosts),
    )


def test_a_tunnel_is_a_connection_of_its_own_beside_the_shared_one(
    ssh_server: SshServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """With the shared connection up (every command opens it first), a tunnel's ssh used to
    hand its forward to that connection and exit at once: taken for a failed connection
    ("cannot reach the staging server ... ssh failed") whenever the machine was slow to
    look, and left open after `terminate`. It holds the forward itself now."""
    from nself_builtins.shared.remote import Server

    server = _server(ssh_server, tmp_path)
    assert isinstance(server, Server)
    try:
        assert server.run("true").returncode == 0  # the shared connection is up
        local, process = server.tunnel("127.0.0.1", ssh_server.port)
        time.sleep(1.5)  # as a loaded machine would be slow to look
        assert process.poll() is None, "the tunnel's ssh exited"
        socket.create_connection(("127.0.0.1", local), timeout=5).close()
        process.terminate()
        process.wait(timeout=10)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", local), timeout=2).close()
    finally:
        server.close()


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie waiting for its reaper counts)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return any(
        line.split()[1:2] == ["Z"] for line in status.splitlines() if line.startswith("State:")
    )


def test_the_tunnel_ends_with_the_nself_that_opened_it_even_when_killed(
    ssh_server: SshServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """An nself killed with SIGKILL runs no clean-up (no atexit, no finally): its tunnel's
    ssh must still go, not hold a local port and a connection to the server for ever."""
    opener = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from sshd import SshServer
from pathlib import Path
from test_remote_tunnel import _server
server = _server(SshServer({ssh_server.port}, Path({str(ssh_server.key)!r}),
                 Path({str(ssh_server.known_hosts)!r})), Path({str(tmp_path)!r}))
local, process = server.tunnel("127.0.0.1", {ssh_server.port})
print(process.pid, local, flush=True)
time.sleep(600)
"""
    nself = subprocess.Popen([sys.executable, "-c", opener], stdout=subprocess.PIPE, text=True)
    pid = 0
    try:
        assert nself.stdout is not None
        pid, local = map(int, nself.stdout.readline().split())
        socket.create_connection(("127.0.0.1", local), timeout=5).close()  # the tunnel is up
        os.kill(nself.pid, signal.SIGKILL)
        nself.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _gone(pid):
            time.sleep(0.2)
        assert _gone(pid), "the tunnel's ssh outlived the nself that opened it"
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", local), timeout=2).close()
    finally:
        nself.kill()
        if pid and not _gone(pid):
            os.kill(pid, signal.SIGTERM)
