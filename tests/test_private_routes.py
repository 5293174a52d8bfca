"""Private routes (the mail UI, the storage console, Grafana) ask for a login and trust no
network by its address.

Through Docker's port proxy (and a hairpin) every client reaches nginx from the Docker
network's gateway, a 172.16.0.0/12 address: a rule allowing that range would let the
internet in. The engine test sends requests to the published port, as a browser would.
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import standin, standin_stack
from kernel_helpers import mail_server
from nself_sdk.envfiles import parse_text
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]
DOMAIN = "local.nself.org"


def https_get(port: int, host: str, login: tuple[str, str] | None = None) -> int:
    """The status of GET / on nginx at 127.0.0.1:port for ``host``, with basic auth."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the dev certificate is self-signed
    auth = ""
    if login is not None:
        auth = "Authorization: Basic " + base64.b64encode(":".join(login).encode()).decode()
        auth += "\r\n"
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        request = f"GET /readyz HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
        tls.sendall(request.encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    return int(data.split(b"\r\n", 1)[0].split()[1])


def dev_value(project: Path, name: str) -> str:
    entries = parse_text((project / ".env.dev").read_text(encoding="utf-8"), ".env.dev")
    return next(e.raw for e in entries if e.key == name)


def test_private_sites_ask_for_a_login_and_allow_no_docker_range(project: Path, nself: Run) -> None:
    set_env(
        project,
        ".env.local",
        MAIL_ENABLED="true",
        STORAGE_ENABLED="true",
        MONITORING_ENABLED="true",
        STORAGE_ALLOW_CIDRS="",
        MAIL_ALLOW_CIDRS="203.0.113.7, 10.8.0.0/16",
    )
    built = nself("build", cwd=project)
    assert built.code == 0, built.output
    sites = project / "nginx" / "sites"
    mail = (sites / "mail.conf").read_text()
    console = (sites / "storage-console.conf").read_text()
    grafana = (sites / "monitor.conf").read_text()
    for text in (mail, console, grafana):
        assert "172.16.0.0/12" not in text and "192.168.0.0/16" not in text
    assert "    allow 203.0.113.7;\n    allow 10.8.0.0/16;\n    deny all;\n" in mail
    for text in (mail, console):
        assert "auth_basic_user_file /etc/nginx/nself/auth/private.htpasswd;" in text
        assert 'proxy_set_header Authorization "";' in text  # the login stays at nginx
    assert "deny all" not in console  # no allowlist: anyone may try, after the login
    assert "auth_basic" not in grafana  # Grafana asks for its own login
    users = (project / "nginx/auth/private.htpasswd").read_text()
    assert users.splitlines()[-1].startswith("admin:{SSHA}")
    assert dev_value(project, "NGINX_AUTH_PASSWORD") not in users

    # A value that is not an address is refused; Docker's range is let in only with a warning.
    set_env(project, ".env.local", MAIL_ALLOW_CIDRS="10.8.0.0/33")
    bad = nself("build", cwd=project)
    assert bad.code == 1 and "MAIL_ALLOW_CIDRS='10.8.0.0/33' is not a list" in bad.err
    set_env(project, ".env.local", MAIL_ALLOW_CIDRS="172.16.0.0/12")
    warned = nself("build", cwd=project)
    assert warned.code == 0 and "MAIL_ALLOW_CIDRS lets in 172.16.0.0/12" in warned.err


def test_trusting_dockers_range_as_a_proxy_is_warned(project: Path, nself: Run) -> None:
    """Trusted proxies' X-Forwarded-For names the client nginx allows and rate-limits: with
    Docker's gateway among them, any client through the port proxy names its own address."""
    set_env(project, ".env.local", MAIL_ENABLED="true", MAIL_ALLOW_CIDRS="203.0.113.0/24")
    set_env(project, ".env.local", NGINX_TRUSTED_PROXIES="10.0.0.5, 172.17.0.1")
    warned = nself("build", cwd=project)
    assert warned.code == 0, warned.output
    assert "NGINX_TRUSTED_PROXIES trusts 172.17.0.1, Docker's own range" in warned.err
    set_env(project, ".env.local", NGINX_TRUSTED_PROXIES="10.0.0.5, 192.0.2.0/24")
    quiet = nself("build", cwd=project)
    assert quiet.code == 0 and "NGINX_TRUSTED_PROXIES" not in quiet.err, quiet.output


def test_a_login_name_nginx_would_split_is_refused(project: Path, nself: Run) -> None:
    """nginx reads a user file line up to its first ':' as the name: 'adm:in' locked every
    private route for everyone (the build wrote it as given)."""
    set_env(project, ".env.local", MAIL_ENABLED="true", NGINX_AUTH_USER="adm:in")
    refused = nself("build", cwd=project)
    assert refused.code == 1, refused.output
    assert ".env.local:3: NGINX_AUTH_USER='adm:in' cannot be the login" in refused.err
    set_env(project, ".env.local", NGINX_AUTH_USER="ops.team@example")
    built = nself("build", cwd=project)
    assert built.code == 0, built.output
    users = (project / "nginx/auth/private.htpasswd").read_text()
    assert users.splitlines()[-1].startswith("ops.team@example:{SSHA}")


def test_a_server_needs_its_own_private_password(project: Path, nself: Run) -> None:
    set_env(project, ".env.prod", STORAGE_ENABLED="true", STORAGE_CONSOLE_ENABLED="true")
    mail_server(project, ".env.secrets.prod")
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    built = nself("build", "--env", "prod", cwd=project)
    assert built.code == 0, built.output
    # the dev value is a stub outside dev
    set_env(
        project,
        ".env.secrets.prod",
        NGINX_AUTH_PASSWORD=dev_value(project, "NGINX_AUTH_PASSWORD"),
    )
    refused = nself("build", "--env", "prod", cwd=project)
    assert refused.code == 1 and "NGINX_AUTH_PASSWORD" in refused.err, refused.output


@pytest.fixture
def mail_stack(tmp_path: Path, nself: Run) -> Iterator[tuple[Path, int]]:
    mailpit = standin("mailpit")
    with standin_stack(nself, tmp_path, "nselfpriv", MAIL_ENABLED="true", MAIL_IMAGE=mailpit) as s:
        yield s.folder, s.https


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_the_published_port_refuses_the_mail_ui_without_a_login(
    mail_stack: tuple[Path, int], nself: Run
) -> None:
    folder, https = mail_stack
    started = nself("start", "nginx", "mail", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output
    host = f"mail.{DOMAIN}"
    # From this machine through the published port: nginx sees the Docker gateway.
    assert https_get(https, host) == 401
    assert https_get(https, host, ("admin", "not-the-password")) == 401
    password = dev_value(folder, "NGINX_AUTH_PASSWORD")
    assert https_get(https, host, ("admin", password)) == 200
    # An allowlist that leaves this machine out refuses it even with the login.
    set_env(folder, ".env.local", MAIL_ALLOW_CIDRS="203.0.113.0/24")
    assert nself("restart", "nginx", "--timeout", "120", cwd=folder).code == 0
    assert https_get(https, host, ("admin", password)) == 403
