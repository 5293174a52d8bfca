"""Rate limits count requests per real client address.

Every request from this machine reaches nginx through Docker's port proxy, from the
network's gateway address: keyed on that, one busy dev app made every local client get
429s. In dev such local requests are not counted; a client nginx can tell apart (here: a
public address given by a trusted proxy in X-Forwarded-For) is, each in its own bucket.

Real engine, Compose v2 and the nginx stand-in (Debian's nginx, with the realip module
like the official image).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from nself_sdk.testing import Result, set_env
from test_runtime_e2e import DOMAIN, stack  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]


def status(port: int, host: str, forwarded: str | None = None) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the dev certificate is self-signed
    extra = f"X-Forwarded-For: {forwarded}\r\n" if forwarded else ""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        request = f"GET / HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
        tls.sendall(request.encode())
        head = tls.recv(64).decode("latin-1")
    return int(head.split()[1])


def test_rate_limits_count_real_clients_not_the_docker_gateway(
    stack: tuple[Path, str, int],  # noqa: F811
    nself: Run,
) -> None:
    folder, _name, https = stack
    set_env(
        folder,
        ".env.local",
        RATE_LIMIT_GENERAL="1r/m",  # a burst of 5: the 7th request in a minute is refused
        NGINX_TRUSTED_PROXIES="10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16",
    )
    started = nself("start", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output
    host = f"echo.{DOMAIN}"

    assert [status(https, host) for _ in range(12)] == [200] * 12

    client = [status(https, host, "203.0.113.7") for _ in range(8)]
    assert client[:6] == [200] * 6 and client[6:] == [429, 429], client
    assert status(https, host, "203.0.113.8") == 200  # another client, its own bucket
    assert status(https, host) == 200  # local requests are still not counted


def test_trusted_proxies_must_be_addresses(tmp_path: Path, nself: Run) -> None:
    folder = tmp_path / "proxied"
    assert nself("init", str(folder), "--name", "proxied").code == 0
    set_env(folder, ".env.local", NGINX_TRUSTED_PROXIES="10.0.0.1, lb.example.com")
    built = nself("build", cwd=folder)
    assert built.code == 1
    assert "'lb.example.com' is not an IP address or network" in built.err
