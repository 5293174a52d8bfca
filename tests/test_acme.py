"""ACME certificates for real: Debian's pebble (Let's Encrypt's test CA) validates HTTP-01
against the stack's nginx (stand-in image, real engine), and DNS-01 through a hook.

One stack runs through the module, in order: the first start obtains a certificate per
host by itself; renewal when due (by the service's own loop) and by hand; revoke, then
renew; a failed validation (the old certificate stays, the error names the host, the
service's passes back off); new certificates nginx -t refuses are never loaded; an
expired certificate replaced; a wildcard certificate through DNS-01; a CA's rate limit
waited out (a stand-in CA: pebble has no rate limits).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from acme_ca import Pebble, RateLimitedCA, pebble_bin  # noqa: F401  (the fixture)
from docker_helpers import remove_project, standin, use_standins
from nself_sdk.testing import Result, set_env

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.usefixtures("docker_engine", "pebble_bin"),
]
Run = Callable[..., Result]
DOMAIN = "example.test"
API, SHOP = f"api.{DOMAIN}", f"shop.{DOMAIN}"


@dataclass
class Site:
    folder: Path
    name: str
    http: int
    https: int
    pebble: Pebble


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """nself in its own process (module fixtures cannot use the in-process runner)."""
    return subprocess.run(
        [sys.executable, "-m", "nself", *args],
        cwd=folder, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def served(site: Site, host: str) -> Any:
    """The certificate nginx presents for ``host`` (SNI), not verified."""
    from cryptography import x509

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", site.https), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def serial(site: Site, host: str) -> str:
    return format(served(site, host).serial_number, "x")


def verified(site: Site, host: str, within: float = 30.0) -> None:
    """A TLS handshake that checks the chain up to pebble's root and the host name.

    Retried for a while: old nginx workers keep serving the previous certificate until
    their connections end, which on a loaded machine can outlast nself's wait after reload.
    """
    context = ssl.create_default_context(cadata=site.pebble.roots())
    deadline = time.monotonic() + within
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", site.https), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=host),
            ):
                return
        except ssl.SSLCertVerificationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def status(nself: Run, site: Site) -> tuple[int, dict[str, Any]]:
    result = nself("ssl", "status", "--json", cwd=site.folder)
    return result.code, json.loads(result.out)


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in report["certificates"]}


def put_env(folder: Path, **values: str) -> None:
    """Set values in .env.local, replacing earlier lines of the same names."""
    path = folder / ".env.local"
    kept = [line for line in path.read_text().splitlines()
            if line.split("=", 1)[0] not in values]  # fmt: skip
    path.write_text("\n".join(kept + [f"{k}={v}" for k, v in values.items()]) + "\n")


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def in_renewer(site: Site, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "compose", "-p", site.name, "exec", "-T", "acme", *argv],
        input=stdin, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    name = f"nselfacme{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("acme") / name
    done = cli(folder.parent, "init", str(folder), "--name", name, "--domain", DOMAIN)
    assert done.returncode == 0, done.stderr
    # One start for the whole module, then minutes of tests: each service keeps its own
    # health-check interval (the renewer's check is a Python start-up, ~0.4 s of CPU).
    http, https = use_standins(
        folder, ".env.local", MONITORING_ENABLED="false", SSL_MODE="acme", HEALTHCHECK_INTERVAL=""
    )
    pebble = Pebble(tmp_path_factory.mktemp("pebble"), http)
    shutil.copy(pebble.ca, folder / "acme-ca.pem")
    set_env(
        folder,
        ".env.local",
        CS_1_NAME="api",
        CS_1_IMAGE=standin("http"),
        CS_1_PORT="8001",
        CS_1_SUBDOMAIN="api",
        CS_2_NAME="shop",
        CS_2_IMAGE=standin("http"),
        CS_2_PORT="8002",
        CS_2_SUBDOMAIN="shop",
        ACME_IMAGE=standin("certbot"),
        ACME_DIRECTORY_URL=pebble.directory,
        ACME_STAGING_DIRECTORY_URL=pebble.directory,
        ACME_CA_BUNDLE="acme-ca.pem",
        ACME_EMAIL="ops@example.test",
    )
    try:
        done = cli(folder, "build")
        assert done.returncode == 0, done.stderr
        done = cli(folder, "start")
        assert done.returncode == 0, done.stdout + done.stderr
        yield Site(folder, name, http, https, pebble)
    finally:
        remove_project(name)
        pebble.close()


def test_nginx_test_before_the_first_start(tmp_path: Path, nself: Run) -> None:
    # The configuration names certificates in the renewer's volume: before the first start
    # nginx test gets the placeholders the first start would make, then tests for real.
    name = f"nselfacmet{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    assert nself("init", str(folder), "--name", name, "--domain", DOMAIN).code == 0
    use_standins(folder, ".env.local", MONITORING_ENABLED="false", SSL_MODE="acme",
                 ACME_IMAGE=standin("certbot"), CS_1_NAME="api", CS_1_IMAGE=standin("http"),
                 CS_1_PORT="8001", CS_1_SUBDOMAIN="api")  # fmt: skip
    try:
        assert nself("build", cwd=folder).code == 0
        result = nself("nginx", "test", cwd=folder)
        assert result.code == 0, result.output
        assert "checked by a throw-away nginx container" in result.out
        broken = folder / "nginx" / "conf.d" / "broken.conf"
        broken.write_text("server {\n  listen 80;\n  no_such_directive on;\n}\n")
        result = nself("nginx", "test", cwd=folder)
        assert result.code == 1 and "nginx/conf.d/broken.conf:3" in result.err, result.output
        assert "did not run" not in result.err
    finally:
        remove_project(name)


def test_the_first_start_obtains_a_certificate_per_host(site: Site, nself: Run) -> None:
    # nginx started on placeholders (it answers HTTP-01), the renewer asked pebble at once.
    def issued() -> bool:
        code, report = status(nself, site)
        return code == 0 and all(not r["placeholder"] for r in report["certificates"])

    wait_for(issued, 120, "the first certificates")
    code, report = status(nself, site)
    assert code == 0, report
    rows = by_name(report)
    assert set(rows) == {API, SHOP}
    for host, row in rows.items():
        assert row["issuer"].startswith("CN=Pebble Intermediate CA"), row
        assert 43 <= row["days_left"] <= 45 and row["failures"] == 0 and row["last_success"]
        verified(site, host)  # the full chain up to pebble's root, for this host name
        assert format(served(site, host).serial_number, "x") == row["serial"]
    sites = (site.folder / "nginx" / "sites" / "api.conf").read_text()
    assert f"ssl_certificate /etc/nginx/certs/live/{API}/fullchain.pem;" in sites
    # Keys are private in the volumes; the account keys' folder is the renewer's alone.
    modes = in_renewer(
        site, "sh", "-c",
        f"stat -c '%a %n' /etc/letsencrypt/live/{API}/privkey.pem /var/lib/letsencrypt "
        "/var/lib/letsencrypt/accounts/*/key.pem",
    )  # fmt: skip
    assert modes.returncode == 0, modes.stderr
    assert [line.split()[0] for line in modes.stdout.splitlines()] == ["600", "700", "600"]
    # Human output names each host with its issuer and expiry.
    shown = nself("ssl", "status", cwd=site.folder)
    assert shown.code == 0 and API in shown.out and "Pebble" in shown.out and "days" in shown.out
    doctor = nself("doctor", "--check", "ssl", "--json", cwd=site.folder)
    findings = json.loads(doctor.out)
    assert {f["level"] for f in findings if f["check"] == "ssl"} == {"ok"}, findings


def test_renewal_when_due_by_the_service_and_by_hand(site: Site, nself: Run) -> None:
    before = {host: serial(site, host) for host in (API, SHOP)}
    result = nself("ssl", "renew", "--json", cwd=site.folder)
    assert result.code == 0, result.output
    assert {r["action"] for r in json.loads(result.out)["results"]} == {"not-due"}
    # --dry-run: the staging CA (pebble here too) issues, nothing is installed or recorded.
    _code, earlier = status(nself, site)
    result = nself("ssl", "renew", "--dry-run", "--json", cwd=site.folder)
    assert result.code == 0, result.output
    assert {r["action"] for r in json.loads(result.out)["results"]} == {"dry-run-ok"}
    assert {host: serial(site, host) for host in (API, SHOP)} == before
    assert status(nself, site)[1]["certificates"] == earlier["certificates"]
    orders = site.pebble.orders()

    # 45-day certificates are due when renewed 50 days ahead: the running service sees
    # the new plan and renews both by itself; its watcher in nginx loads them.
    put_env(site.folder, ACME_RENEW_DAYS="50")
    assert nself("build", cwd=site.folder).code == 0
    wait_for(
        lambda: all(serial(site, h) != before[h] for h in (API, SHOP)), 90, "automatic renewal"
    )
    assert site.pebble.orders() >= orders + 2
    put_env(site.folder, ACME_RENEW_DAYS="30")
    assert nself("build", cwd=site.folder).code == 0

    # By hand, forced, one host: loaded by the time the command returns.
    old = serial(site, API)
    shop = serial(site, SHOP)
    result = nself("ssl", "renew", "--force", API, cwd=site.folder)
    assert result.code == 0, result.output
    assert "new certificate installed" in result.out
    assert serial(site, API) != old and serial(site, SHOP) == shop
    verified(site, API)


def test_revoke_then_renew(site: Site, nself: Run) -> None:
    old = serial(site, API)
    result = nself("ssl", "revoke", API, cwd=site.folder)
    assert result.code == 0, result.output
    assert site.pebble.revoked(old)
    new = serial(site, API)
    assert new != old, result.output
    assert not site.pebble.revoked(new)
    verified(site, API)
    code, report = status(nself, site)
    assert code == 0 and not by_name(report)[API]["revoked"]


def test_a_failed_validation_keeps_the_old_certificate(site: Site, nself: Run) -> None:
    kept = serial(site, SHOP)
    site.pebble.point(SHOP, "127.0.0.2")  # the name points where nginx does not listen
    try:
        result = nself("ssl", "renew", "--force", SHOP, cwd=site.folder)
        assert result.code == 1
        assert SHOP in result.err and "127.0.0.2" in result.err, result.output
        assert "Traceback" not in result.output
        assert serial(site, SHOP) == kept  # nginx serves the last good one
        code, report = status(nself, site)
        row = by_name(report)[SHOP]
        assert code == 1 and row["failures"] == 1 and SHOP in row["last_error"]
        assert row["next_attempt"] and row["last_attempt"]
        assert any(SHOP in p["message"] for p in report["problems"])
        human = nself("ssl", "status", cwd=site.folder)
        assert human.code == 1 and "renewal failed" in human.err and SHOP in human.err

        # The service's own passes wait out the backoff: no new order reaches the CA.
        orders = site.pebble.orders()
        passed = in_renewer(
            site, "python3", "/nself/renewer.py", "renew", "--scheduled", "--force",
            "--only", SHOP,
        )  # fmt: skip
        assert json.loads(passed.stdout)[0]["action"] == "waiting", passed.stdout
        assert site.pebble.orders() == orders
    finally:
        site.pebble.unpoint(SHOP)
    # Fixed: renewing by hand does not wait for the backoff.
    result = nself("ssl", "renew", "--force", SHOP, cwd=site.folder)
    assert result.code == 0, result.output
    assert serial(site, SHOP) != kept
    code, report = status(nself, site)
    assert code == 0 and by_name(report)[SHOP]["failures"] == 0


def test_certificates_nginx_refuses_are_never_loaded(site: Site, nself: Run) -> None:
    old = serial(site, API)
    broken = site.folder / "nginx" / "conf.d" / "broken.conf"
    broken.write_text("server {\n  listen 80;\n  no_such_directive on;\n}\n")
    try:
        result = nself("ssl", "renew", "--force", API, cwd=site.folder)
        assert result.code == 1 and "fail nginx -t" in result.err, result.output
        time.sleep(7)  # nginx's own watcher (5 s) refuses to reload them too
        assert serial(site, API) == old
    finally:
        broken.unlink()
    assert nself("nginx", "reload", cwd=site.folder).code == 0
    assert serial(site, API) != old


EXPIRED = """
import json, sys
sys.path.insert(0, "/nself")
import renewer
data = json.load(sys.stdin)
renewer.install(data["name"], data["cert"].encode(), data["key"].encode())
"""


def expired_certificate(host: str, days: int = -10) -> tuple[str, str]:
    """A self-signed certificate for ``host`` ending ``days`` from now (expired by
    default)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "an old CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=100))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(pem).decode(), key_pem.decode()


def watcher_pid(site: Site) -> int:
    """The host PID of nginx's container's first process: the watcher's shell."""
    ids = subprocess.run(["docker", "compose", "-p", site.name, "ps", "-q", "nginx"],
                         capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", ids[0]],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(pid)


def test_renew_by_hand_loads_what_the_service_installed(site: Site, nself: Run) -> None:
    # The service's own pass installed a certificate (here: put in place directly) and
    # nginx's watcher has not reloaded yet: a renewal by hand that finds nothing due still
    # returns with nginx serving it.
    old = serial(site, API)
    pid = watcher_pid(site)
    os.kill(pid, signal.SIGSTOP)  # nginx itself keeps serving; its watcher waits
    try:
        cert, key = expired_certificate(API, days=60)
        put = in_renewer(site, "python3", "-c", EXPIRED,
                         stdin=json.dumps({"name": API, "cert": cert, "key": key}))  # fmt: skip
        assert put.returncode == 0, put.stderr
        result = nself("ssl", "renew", "--json", cwd=site.folder)
        assert result.code == 0, result.output
        assert {r["action"] for r in json.loads(result.out)["results"]} == {"not-due"}
        assert serial(site, API) != old
    finally:
        os.kill(pid, signal.SIGCONT)
    result = nself("ssl", "renew", "--force", API, cwd=site.folder)  # pebble's again
    assert result.code == 0, result.output
    verified(site, API)


def test_an_expired_certificate_is_replaced(site: Site, nself: Run) -> None:
    cert, key = expired_certificate(API)
    put = in_renewer(site, "python3", "-c", EXPIRED,
                     stdin=json.dumps({"name": API, "cert": cert, "key": key}))  # fmt: skip
    assert put.returncode == 0, put.stderr
    now = datetime.datetime.now(datetime.UTC)
    wait_for(lambda: served(site, API).not_valid_after_utc < now, 30, "nginx to load it")

    # Loud everywhere: status, doctor.
    result = nself("ssl", "status", cwd=site.folder)
    assert result.code == 1 and "EXPIRED" in result.err and API in result.err
    doctor = nself("doctor", "--check", "ssl", "--json", cwd=site.folder)
    findings = [f for f in json.loads(doctor.out) if f["check"] == "ssl"]
    assert any(f["level"] == "error" and "EXPIRED" in f["message"] for f in findings)

    result = nself("ssl", "renew", "--json", cwd=site.folder)
    assert result.code == 0, result.output
    actions = {r["name"]: (r["action"], r["reason"]) for r in json.loads(result.out)["results"]}
    assert actions[API] == ("renewed", "it has expired") and actions[SHOP][0] == "not-due"
    assert served(site, API).not_valid_after_utc > now
    verified(site, API)


HOOK = """#!/usr/bin/env python3
# DNS-01 for the test: publish the TXT record in pebble-challtestsrv.
import json, os, sys, urllib.request
action, domain, record, value = sys.argv[1:5]
body = {"host": record + ".", "value": value} if action == "present" else {"host": record + "."}
path = "/set-txt" if action == "present" else "/clear-txt"
request = urllib.request.Request(os.environ["CHALLTESTSRV"] + path,
                                 data=json.dumps(body).encode(), method="POST")
urllib.request.urlopen(request, timeout=10).read()
print(action, record, file=sys.stderr)
"""


def test_a_wildcard_certificate_through_dns_01(site: Site, nself: Run) -> None:
    hook = site.folder / "dns-hook.py"
    hook.write_text(HOOK)
    set_env(
        site.folder,
        ".env.local",
        ACME_DNS_HOOK="dns-hook.py",
        ACME_DNS_PROPAGATION_SECONDS="0",
        ACME_DNS_ENV_CHALLTESTSRV=site.pebble.dns_management,
    )
    result = nself("build", cwd=site.folder)
    assert result.code == 0, result.output
    wildcard = f"_wildcard.{DOMAIN}"
    assert wildcard in (site.folder / "nginx" / "sites" / "shop.conf").read_text()
    result = nself("start", cwd=site.folder)  # a placeholder first, so nginx can load it
    assert result.code == 0, result.output
    result = nself("ssl", "renew", cwd=site.folder)
    assert result.code == 0, result.output
    for host in (API, SHOP):
        cert = served(site, host)
        from cryptography import x509

        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(names.get_values_for_type(x509.DNSName)) == {DOMAIN, f"*.{DOMAIN}"}
        verified(site, host)
    code, report = status(nself, site)
    assert code == 0 and list(by_name(report)) == [wildcard]
    # Revoking "the host's certificate" revokes the wildcard that serves it.
    old = serial(site, API)
    result = nself("ssl", "revoke", API, cwd=site.folder)
    assert result.code == 0, result.output
    new = serial(site, API)
    assert site.pebble.revoked(old) and new != old and not site.pebble.revoked(new)
    assert serial(site, SHOP) == new  # one certificate for every host
    result = nself("ssl", "renew", "--force", "www.other.test", cwd=site.folder)
    assert result.code == 1 and "no certificate covers www.other.test" in result.err


def test_a_rate_limit_is_waited_out(site: Site, nself: Run, tmp_path: Path) -> None:
    limited = RateLimitedCA(tmp_path, retry_after=7200)
    try:
        shutil.copy(limited.ca, site.folder / "limited-ca.pem")
        put_env(site.folder, ACME_DIRECTORY_URL=limited.directory, ACME_CA_BUNDLE="limited-ca.pem")
        assert nself("build", cwd=site.folder).code == 0
        verified(site, API)  # what the earlier tests left is served, not a reload away
        kept = serial(site, API)
        result = nself("ssl", "renew", "--force", "--json", cwd=site.folder)
        assert result.code == 1
        (row,) = json.loads(result.out)["results"]
        assert row["action"] == "failed" and "rateLimited" in row["error"], row
        until = datetime.datetime.fromisoformat(row["until"])
        ahead = until - datetime.datetime.now(datetime.UTC)
        assert datetime.timedelta(minutes=110) < ahead <= datetime.timedelta(hours=2)
        assert limited.orders() == 1 and serial(site, API) == kept
        # Asking again by hand, or the service's passes: the CA is not asked again.
        result = nself("ssl", "renew", "--force", cwd=site.folder)
        assert result.code == 1 and "waits until" in result.out + result.err, result.output
        passed = in_renewer(site, "python3", "/nself/renewer.py", "renew", "--scheduled", "--force")
        assert json.loads(passed.stdout)[0]["action"] == "waiting", passed.stdout
        assert limited.orders() == 1
        code, report = status(nself, site)
        assert code == 1 and by_name(report)[f"_wildcard.{DOMAIN}"]["rate_limited_until"]
    finally:
        limited.close()
