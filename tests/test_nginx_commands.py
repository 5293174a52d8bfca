"""`nself nginx test|reload|show` on a real Docker engine with the nginx stand-in image.

Hasura and Auth are disabled (their images cannot be obtained on this machine); the
nginx checks run the stand-in's real nginx binary on the project's files.
"""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import standin_stack
from nself_sdk.testing import Result, set_env

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

Run = Callable[..., Result]
HOST = "custom.local.nself.org"


def http_get(port: int, host: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def started_at(project: str) -> str:
    ids = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={project}",
            "--filter",
            "label=com.docker.compose.service=nginx",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(ids) == 1
    inspect = subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True)
    return str(json.loads(inspect.stdout)[0]["State"]["StartedAt"])


@pytest.fixture
def stack(tmp_path: Path, nself: Run) -> Iterator[tuple[Path, str, int]]:
    with standin_stack(nself, tmp_path, "nselfng") as s:
        yield s.folder, s.name, s.http


def served_issuer(port: int, host: str) -> str:
    """The issuer of the certificate nginx presents for ``host`` (openssl's own client)."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", host],
        input="", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return next((line for line in done.stdout.splitlines() if "issuer=" in line), "")


def test_test_reload_and_show(
    stack: tuple[Path, str, int], nself: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, name, port = stack
    assert nself("build", cwd=folder).code == 0

    # Before nginx runs: checked in a throw-away container of the service.
    r = nself("nginx", "test", cwd=folder)
    assert r.code == 0, r.output
    assert "throw-away" in r.out
    r = nself("nginx", "reload", cwd=folder)
    assert r.code == 1 and "nginx is not running" in r.err

    r = nself("start", "nginx", cwd=folder)
    assert r.code == 0, r.output
    before = started_at(name)

    # A broken hand-written file: named with its line, refused, the old config keeps serving.
    broken = folder / "nginx" / "conf.d" / "broken.conf"
    broken.write_text("server {\n  listen 80;\n  this_is_not_a_directive on;\n}\n")
    r = nself("nginx", "test", cwd=folder)
    assert r.code == 1 and "nginx/conf.d/broken.conf:3" in r.err and "Traceback" not in r.output
    r = nself("nginx", "reload", cwd=folder)
    assert r.code == 1 and "not reloaded" in r.err and "keeps serving" in r.err
    assert http_get(port, HOST)[0] == 301  # still the generated HTTP -> HTTPS redirect

    # A valid one: loaded by the running nginx, without a restart.
    broken.unlink()
    (folder / "nginx" / "conf.d" / "custom.conf").write_text(
        f'server {{\n  listen 80;\n  server_name {HOST};\n  return 200 "hello-reload\\n";\n}}\n'
    )
    r = nself("nginx", "test", cwd=folder)
    assert r.code == 0 and "the running nginx" in r.out
    r = nself("nginx", "reload", cwd=folder)
    assert r.code == 0, r.output
    assert http_get(port, HOST) == (200, "hello-reload\n")
    assert started_at(name) == before  # reloaded, not restarted

    # A new development certificate is loaded by the running nginx at once.
    https = int(next(
        line.split("=", 1)[1] for line in (folder / ".env.local").read_text().splitlines()
        if line.startswith("NGINX_HTTPS_PORT=")
    ))  # fmt: skip
    assert "mkcert" not in served_issuer(https, "api.local.nself.org")
    monkeypatch.setenv("CAROOT", str(tmp_path / "caroot"))  # mkcert's CA, kept out of $HOME
    r = nself("ssl", "generate", cwd=folder)
    assert r.code == 0 and "nginx reloaded with it" in r.out, r.output
    assert "mkcert development CA" in served_issuer(https, "api.local.nself.org")
    assert started_at(name) == before

    # `nself start` on a running nginx loads what changed since it (re)loaded, and only then.
    (folder / "nginx" / "conf.d" / "custom.conf").write_text(
        f'server {{\n  listen 80;\n  server_name {HOST};\n  return 200 "after-start\\n";\n}}\n'
    )
    r = nself("start", "nginx", cwd=folder)
    assert r.code == 0 and "nginx reloaded: its configuration changed" in r.out, r.output
    assert http_get(port, HOST) == (200, "after-start\n")
    r = nself("start", "nginx", cwd=folder)
    assert r.code == 0 and "nginx reloaded" not in r.out, r.output
    assert started_at(name) == before

    r = nself("nginx", "show", cwd=folder)
    assert r.code == 0
    assert "# --- nginx/nginx.conf ---" in r.out and "# --- nginx/conf.d/custom.conf ---" in r.out
    r = nself("nginx", "show", "no-such-site", cwd=folder)
    assert r.code == 1 and "no generated site 'no-such-site'" in r.err


def test_an_image_that_cannot_be_had_is_an_error_not_valid(
    stack: tuple[Path, str, int], nself: Run
) -> None:
    """Compose can exit 0 when the image of a one-off container cannot be pulled."""
    folder, _name, _port = stack
    set_env(folder, ".env.local", NGINX_IMAGE="localhost:1/nowhere/nginx:1")  # refused at once
    assert nself("build", cwd=folder).code == 0
    r = nself("nginx", "test", cwd=folder)
    assert r.code == 1 and "cannot be pulled" in r.err and "valid" not in r.out
    assert "NGINX_IMAGE" in r.err


def test_start_says_when_the_certificate_expires_soon(
    stack: tuple[Path, str, int], nself: Run
) -> None:
    from test_ssl import make_certificate

    folder, _name, _port = stack
    make_certificate(folder, "soon", "local.nself.org", days=10)
    set_env(
        folder, ".env.local", SSL_CERTIFICATE_FILE="soon.crt", SSL_CERTIFICATE_KEY_FILE="soon.key"
    )
    r = nself("start", "nginx", cwd=folder)
    assert r.code == 0, r.output
    assert "certificate: nginx/ssl/soon.crt expires soon" in r.err
