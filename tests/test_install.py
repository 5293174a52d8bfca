"""`nself install --domain D`: the dry run on this machine, and the whole install plus an
idempotent second run on a throw-away Debian 13 server (``install_root``: a debootstrapped
root entered with chroot inside a network namespace of its own; the Docker engine is this
machine's, shared through its socket)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import docker_ok, free_port, standin
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]
DOMAIN = "shop.example.test"


def test_dry_run_lists_every_step_and_writes_nothing(tmp_path: Path, nself: Run) -> None:
    target = tmp_path / "srv" / "shop"
    result = nself("install", "--domain", DOMAIN, "--path", str(target), "--dry-run")
    assert result.code == 0, result.output
    steps = [line for line in result.out.splitlines() if line[:3].strip().rstrip(".").isdigit()]
    assert [s.split(". ", 1)[1] for s in steps] == [
        "the server",
        "Docker Engine and Compose v2",
        "the project",
        "production settings",
        "the target environment",
        "production secrets",
        "the firewall (DOCKER-USER)",
        "the stack's files",
        "the hardening suite",
        "the stack",
        "certificates",
    ]
    assert f"nself init {target} --name shop --domain {DOMAIN}" in result.out
    assert "BACKUP_SCHEDULE=0 2 * * *" in result.out
    assert "nself-docker-user.service" in result.out
    assert not (tmp_path / "srv").exists(), "a dry run writes nothing"


def test_an_existing_project_is_refused_without_force(project: Path, nself: Run) -> None:
    before = sorted(p.name for p in project.iterdir())
    result = nself("install", "--domain", DOMAIN, "--path", str(project), "--dry-run")
    assert result.code == 1
    assert f"{project} already holds an nself project that nself install did not make" in result.err
    assert "--force" in result.err
    forced = nself("install", "--domain", DOMAIN, "--path", str(project), "--dry-run", "--force")
    assert forced.code == 0 and "taken over (--force)" in forced.out
    assert sorted(p.name for p in project.iterdir()) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--domain", "localhost"], "is not a domain name"),
        (["--domain", DOMAIN, "--env", "dev"], "prepares prod or staging"),
        (["--domain", DOMAIN, "--name", "Bad_Name"], "is not a project name"),
        (["--domain", DOMAIN, "--restore", "/nonexistent.dump"], "no such file"),
        (["--domain", DOMAIN, "--email", "o'hara@x.example"], "is not a mail address"),
    ],
)
def test_bad_options_are_usage_errors(nself: Run, args: list[str], message: str) -> None:
    result = nself("install", *args, "--dry-run")
    assert result.code == 2 and message in result.err


# -- the whole install on a throw-away server ----------------------------------------------------
needs_root_and_engine = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("debootstrap") is None or not docker_ok(),
    reason="needs root, debootstrap and a Docker engine",
)


def _down(project: str) -> None:
    label = f"label=com.docker.compose.project={project}"
    for kind, listing in (
        ("container", ["docker", "ps", "-aq", "--filter", label]),
        ("network", ["docker", "network", "ls", "-q", "--filter", label]),
        ("volume", ["docker", "volume", "ls", "-q", "--filter", label]),
    ):
        ids = subprocess.run(listing, capture_output=True, text=True, check=False).stdout.split()
        if ids:
            subprocess.run(["docker", kind, "rm", "-f", *ids], capture_output=True, check=False)


@pytest.fixture
def repository(tmp_path: Path, nself: Run) -> Iterator[tuple[Path, str, int]]:
    """A project in a git repository, set up for this machine's stand-in images."""
    name = f"inst{uuid.uuid4().hex[:8]}"
    source = tmp_path / "source"
    assert nself("init", str(source), "--name", name, "--domain", DOMAIN).code == 0
    https = free_port()
    set_env(source, ".env.prod", HASURA_ENABLED="false", AUTH_ENABLED="false",
            MONITORING_ENABLED="false", POSTGRES_IMAGE=standin("postgres"),
            NGINX_IMAGE=standin("nginx"), NGINX_HTTP_PORT=str(free_port()),
            NGINX_HTTPS_PORT=str(https), SSL_MODE="local")  # no ACME CA answers here  # fmt: skip
    for argv in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t",
                                                  "commit", "-qm", "the project"]):  # fmt: skip
        subprocess.run(["git", "-C", str(source), *argv], check=True, capture_output=True)
    try:
        yield source, name, https
    finally:
        _down(name)


@pytest.mark.slow
@needs_root_and_engine
def test_install_then_a_second_run_changes_nothing(
    tmp_path: Path, repository: tuple[Path, str, int]
) -> None:
    import install_root

    source, name, https = repository
    target = tmp_path / "srv" / name
    with install_root.server(tmp_path, binds=[tmp_path]) as server:
        assert server.run("sh", "-c", "command -v docker").returncode != 0, "a server w/o Docker"
        argv = ["nself", "install", "--domain", DOMAIN, "--path", str(target),
                "--from-git", f"file://{source}", "--email", "ops@example.test"]  # fmt: skip
        first = server.run(*argv)
        out = first.stdout + first.stderr
        assert first.returncode == 0, out
        for line in (
            "2. Docker Engine and Compose v2: installed docker.io, docker-cli, docker-compose: "
            "Docker",
            f"3. the project: cloned file://{source}",
            "4. production settings: .env.prod: BACKUP_SCHEDULE=0 2 * * *, "
            "ACME_EMAIL=ops@example.test",  # the clone names the domain already
            "5. the target environment: now prod",
            "6. production secrets: generated",
            "7. the firewall (DOCKER-USER):",
            "8. the stack's files:",
            "9. the hardening suite:",
            "10. the stack: started",
            "11. certificates: SSL_MODE=local: prod serves nself's self-signed certificate",
            "step(s) changed",
        ):
            assert line in out, f"{line!r} not in:\n{out}"
        # The system: packages, the boot-time rules (enabled for docker.service), the rules.
        assert server.run("docker", "compose", "version").returncode == 0
        script = server.path("/usr/local/sbin/nself-docker-user")
        assert script.stat().st_mode & 0o777 == 0o755
        wants = server.path("/etc/systemd/system/docker.service.wants/nself-docker-user.service")
        assert wants.is_symlink()
        rules = server.run("iptables", "-w", "-S", "DOCKER-USER").stdout
        assert f"--ctorigdstport {https} " in rules and rules.count("--comment nself") == 7
        # The project: prod secrets private, the target switched, the stack serving.
        assert (target / ".env.secrets.prod").stat().st_mode & 0o777 == 0o600
        assert (target / ".nself" / "env").read_text().strip() == "prod"
        assert json.loads((target / ".nself" / "install.json").read_text())["domain"] == DOMAIN
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with urllib.request.urlopen(f"https://127.0.0.1:{https}/health", context=context) as r:
            assert r.status == 200
        secrets = (target / ".env.secrets.prod").read_bytes()

        second = server.run(*argv)
        again = second.stdout + second.stderr
        assert second.returncode == 0, again
        assert "nothing changed: already installed" in again, again
        assert "changed" not in again.replace("nothing changed", "")
        assert (target / ".env.secrets.prod").read_bytes() == secrets
        assert server.run("iptables", "-w", "-S", "DOCKER-USER").stdout == rules

        # On the server, `nself db` reaches the prod database nself install brought up.
        server.join(f"{name}_nself")
        backup = server.run("nself", "-C", str(target), "db", "backup", "--label", "moved")
        assert backup.returncode == 0, backup.stdout + backup.stderr
        dump = next((target / "backups").glob("*moved.dump"))
        elsewhere = tmp_path / "from-the-old-server"
        elsewhere.mkdir()
        for companion in (target / "backups").glob(f"{dump.name}*"):
            shutil.copy2(companion, elsewhere / companion.name)
        restore = [*argv, "--restore", str(elsewhere / dump.name)]
        third = server.run(*restore)
        assert third.returncode == 0, third.stdout + third.stderr
        assert f"12. the data: restored {dump.name}" in third.stdout
        fourth = server.run(*restore)
        assert fourth.returncode == 0 and "nothing changed: already installed" in fourth.stdout
        assert "12. the data: " + dump.name + " was restored by an earlier run" in fourth.stdout


@pytest.mark.slow
@needs_root_and_engine
def test_install_obtains_certificates_from_an_acme_ca(tmp_path: Path, nself: Run) -> None:
    # Production's default: ACME. The suite runs before the first start (the renewer cannot
    # answer yet), the stack starts, and the CA (Debian's pebble) validates HTTP-01 through
    # the new server's nginx.
    import install_root
    from acme_ca import Pebble

    if not (shutil.which("pebble") and shutil.which("pebble-challtestsrv")):
        pytest.fail("pebble is not installed (Debian: apt-get install pebble; scripts/test does)")
    name = f"insa{uuid.uuid4().hex[:8]}"
    source = tmp_path / "source"
    assert nself("init", str(source), "--name", name, "--domain", DOMAIN).code == 0
    http, https = free_port(), free_port()
    (tmp_path / "pebble").mkdir()
    pebble = Pebble(tmp_path / "pebble", http)
    shutil.copy(pebble.ca, source / "acme-ca.pem")
    set_env(source, ".env.prod", HASURA_ENABLED="false", AUTH_ENABLED="false",
            MONITORING_ENABLED="false", POSTGRES_IMAGE=standin("postgres"),
            NGINX_IMAGE=standin("nginx"), NGINX_HTTP_PORT=str(http), NGINX_HTTPS_PORT=str(https),
            ACME_IMAGE=standin("certbot"), ACME_DIRECTORY_URL=pebble.directory,
            ACME_CA_BUNDLE="acme-ca.pem", CS_1_NAME="api", CS_1_IMAGE=standin("http"),
            CS_1_PORT="8001", CS_1_SUBDOMAIN="api")  # fmt: skip
    for argv in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t",
                                                  "commit", "-qm", "the project"]):  # fmt: skip
        subprocess.run(["git", "-C", str(source), *argv], check=True, capture_output=True)
    target = tmp_path / "srv" / name
    host = f"api.{DOMAIN}"
    try:
        with install_root.server(tmp_path, binds=[tmp_path]) as server:
            argv = ["nself", "install", "--domain", DOMAIN, "--path", str(target),
                    "--from-git", f"file://{source}"]  # fmt: skip
            first = server.run(*argv)
            out = first.stdout + first.stderr
            assert first.returncode == 0, out
            assert "9. the hardening suite:" in out and "10. the stack: started" in out, out
            assert "not obtained" not in out, out
            # Served by the new server's nginx, chained to the CA's root, for the host name.
            context = ssl.create_default_context(cadata=pebble.roots())
            with (
                socket.create_connection(("127.0.0.1", https), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=host) as tls,
            ):
                assert tls.getpeercert() is not None
            second = server.run(*argv)
            again = second.stdout + second.stderr
            assert second.returncode == 0, again
            assert "11. certificates: every certificate is current" in again, again
            assert "nothing changed: already installed" in again, again
    finally:
        _down(name)
        pebble.close()
