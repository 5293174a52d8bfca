"""The first deploy to a server obtains its certificates by itself: a real OpenSSH server
on this machine is the staging server, Debian's pebble the CA, validating HTTP-01
against the nginx the release runs (stand-in image, real engine). The certificates live
in the stack's volume, so the next release serves the same ones."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from acme_ca import Pebble, pebble_bin  # noqa: F401  (the fixture)
from docker_helpers import remove_project, standin, use_standins
from nself_sdk.testing import Result, set_env
from sshd import SshServer, ssh_server  # noqa: F401  (the fixture)
from test_acme import Site, serial, served, verified, wait_for

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.usefixtures("docker_engine", "pebble_bin"),
]
Run = Callable[..., Result]
DOMAIN = "example.test"


def test_the_first_deploy_obtains_certificates(
    tmp_path: Path,
    nself: Run,
    ssh_server: SshServer,  # noqa: F811
) -> None:
    name = f"nselfacmedeploy{uuid.uuid4().hex[:6]}"
    folder = tmp_path / name
    assert nself("init", str(folder), "--name", name, "--domain", DOMAIN).code == 0
    (folder / "deploy").mkdir()
    shutil.copy(ssh_server.key, folder / "deploy" / "id_deploy")
    http, https = use_standins(
        folder,
        ".env.staging",
        SSL_MODE="auto",  # staging: certificates from the ACME CA
        CS_1_NAME="api",
        CS_1_IMAGE=standin("http"),
        CS_1_PORT="8001",
        CS_1_SUBDOMAIN="api",
        MONITORING_ENABLED="false",
        DEPLOY_HOST="127.0.0.1",
        DEPLOY_PORT=str(ssh_server.port),
        DEPLOY_SSH_KEY="deploy/id_deploy",
        DEPLOY_KNOWN_HOSTS=str(ssh_server.known_hosts),
        DEPLOY_PATH=str(tmp_path / "server" / name),
        DEPLOY_TIMEOUT="120",
        DEPLOY_WATCH="3",
    )
    (tmp_path / "pebble").mkdir()
    pebble = Pebble(tmp_path / "pebble", http)
    shutil.copy(pebble.ca, folder / "acme-ca.pem")
    set_env(
        folder,
        ".env.staging",
        ACME_IMAGE=standin("certbot"),
        ACME_DIRECTORY_URL=pebble.directory,
        ACME_CA_BUNDLE="acme-ca.pem",
    )
    assert nself("secrets", "generate", "--env", "staging", cwd=folder).code == 0
    site = Site(folder, name, http, https, pebble)
    try:
        result = nself("deploy", "staging", cwd=folder)
        assert result.code == 0, result.output

        def issued() -> bool:
            shown = nself("ssl", "status", "--env", "staging", "--json", cwd=folder)
            rows = json.loads(shown.out).get("certificates", [])
            return shown.code == 0 and bool(rows) and not rows[0]["placeholder"]

        wait_for(issued, 120, "the server's first certificate")
        shown = nself("ssl", "status", "--env", "staging", "--json", cwd=folder)
        (host,) = (row["name"] for row in json.loads(shown.out)["certificates"])
        assert host.startswith("api.") and host.endswith(DOMAIN)  # staging's own domain
        # nginx's own watcher loads it within seconds (nothing on the server runs nself).
        wait_for(lambda: "Pebble" in str(served(site, host).issuer), 30, "nginx to load it")
        verified(site, host)  # served by the release's nginx, chained to pebble's root
        first = serial(site, host)

        # The next release serves the same certificate: it lives in the stack's volume.
        (folder / "nginx" / "conf.d" / "note.conf").write_text("# release two\n")
        result = nself("deploy", "staging", cwd=folder)
        assert result.code == 0, result.output
        assert serial(site, host) == first
        verified(site, host)
        # And it is renewed on the server by hand, through the same SSH connection.
        result = nself("ssl", "renew", "--force", "--env", "staging", cwd=folder)
        assert result.code == 0, result.output
        assert serial(site, host) != first
    finally:
        remove_project(name)
        pebble.close()
