"""Certificates: the project's own (SSL_CERTIFICATE_FILE), the development one, `nself ssl`.

mkcert is the real Debian package; its CA lives in a temporary CAROOT and is "installed"
into the NSS store only (TRUST_STORES=nss), so the tests never change this machine's
system trust store.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from docker_helpers import needs_docker, standin
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]


def make_certificate(
    folder: Path, name: str, domain: str, days: int = 90, key_mode: int = 0o600
) -> None:
    """A self-signed certificate for ``domain`` and ``*.domain`` in nginx/ssl/NAME.crt|key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    start = min(now, now + datetime.timedelta(days=days)) - datetime.timedelta(days=2)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName(f"*.{domain}")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    ssl = folder / "nginx" / "ssl"
    ssl.mkdir(parents=True, exist_ok=True)
    (ssl / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = ssl / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(key_mode)


def status(nself: Run, folder: Path) -> tuple[Result, dict[str, object]]:
    result = nself("ssl", "status", "--json", cwd=folder)
    return result, json.loads(result.out)


# -- the development certificate -----------------------------------------------------------


def test_the_dev_certificate_follows_the_domain(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    assert (project / "nginx" / "ssl" / "local.nself.org.crt").is_file()
    result, report = status(nself, project)
    assert result.code == 0 and report["self_signed"] and report["uncovered"] == []
    assert report["days_left"] > 700  # type: ignore[operator]

    set_env(project, ".env.local", BASE_DOMAIN="shop.test")
    build = nself("build", cwd=project)
    assert "created  nginx/ssl/shop.test.crt" in build.out
    assert "removed  nginx/ssl/local.nself.org.crt" in build.out
    assert (project / "nginx" / "ssl" / "shop.test.key").stat().st_mode & 0o777 == 0o600
    result, report = status(nself, project)
    assert result.code == 0 and "api.shop.test" in report["hosts"]  # type: ignore[operator]


# -- the project's own certificate -----------------------------------------------------------


def test_an_own_certificate_is_served_instead(project: Path, nself: Run) -> None:
    make_certificate(project, "example", "local.nself.org")
    set_env(
        project,
        ".env.local",
        SSL_CERTIFICATE_FILE="example.crt",
        SSL_CERTIFICATE_KEY_FILE="nginx/ssl/example.key",  # both spellings are accepted
    )
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    sites = project / "nginx" / "sites"
    for site in ("00-default.conf", "api.conf"):
        text = (sites / site).read_text()
        assert "ssl_certificate /etc/nginx/nself/ssl/example.crt;" in text
        assert "ssl_certificate_key /etc/nginx/nself/ssl/example.key;" in text
    assert not (project / "nginx" / "ssl" / "local.nself.org.crt").exists()
    result, report = status(nself, project)
    assert result.code == 0 and report["file"] == "nginx/ssl/example.crt"


@needs_docker
def test_nginx_accepts_an_own_certificate(project: Path, nself: Run, docker_engine: None) -> None:
    make_certificate(project, "example", "local.nself.org")
    set_env(
        project,
        ".env.local",
        SSL_CERTIFICATE_FILE="example.crt",
        SSL_CERTIFICATE_KEY_FILE="example.key",
    )
    assert nself("build", cwd=project).code == 0
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none",
         "-v", f"{project / 'nginx'}:/etc/nginx/nself:ro",
         standin("nginx"), "nginx", "-t", "-c", "/etc/nginx/nself/nginx.conf"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"SSL_CERTIFICATE_FILE": "example.crt"},
            "SSL_CERTIFICATE_FILE is set but SSL_CERTIFICATE_KEY_FILE",
        ),
        (
            {"SSL_CERTIFICATE_KEY_FILE": "example.key"},
            "SSL_CERTIFICATE_KEY_FILE is set but SSL_CERTIFICATE_FILE",
        ),
        (
            {"SSL_CERTIFICATE_FILE": "missing.crt", "SSL_CERTIFICATE_KEY_FILE": "example.key"},
            "nginx/ssl/missing.crt does not exist",
        ),
        (
            {"SSL_CERTIFICATE_FILE": "/etc/ssl/x.crt", "SSL_CERTIFICATE_KEY_FILE": "example.key"},
            "must name a file in nginx/ssl/",
        ),
        (
            {"SSL_CERTIFICATE_FILE": "../x.crt", "SSL_CERTIFICATE_KEY_FILE": "example.key"},
            "must name a file in nginx/ssl/",
        ),
    ],
)
def test_bad_certificate_settings_stop_the_build(
    project: Path, nself: Run, settings: dict[str, str], message: str
) -> None:
    make_certificate(project, "example", "local.nself.org")
    set_env(project, ".env.local", **settings)
    result = nself("build", cwd=project)
    assert result.code == 1 and message in result.err, result.output
    assert "Traceback" not in result.output
    assert not (project / "docker-compose.yml").exists()


def test_a_readable_key_is_a_warning(project: Path, nself: Run) -> None:
    make_certificate(project, "example", "local.nself.org", key_mode=0o644)
    set_env(
        project,
        ".env.local",
        SSL_CERTIFICATE_FILE="example.crt",
        SSL_CERTIFICATE_KEY_FILE="example.key",
    )
    result = nself("build", cwd=project)
    assert result.code == 0
    assert "nginx/ssl/example.key is readable by other users" in result.err
    assert "chmod 600 nginx/ssl/example.key" in result.err


def test_status_fails_for_expired_or_foreign_certificates(project: Path, nself: Run) -> None:
    make_certificate(project, "old", "local.nself.org", days=-3)
    set_env(
        project, ".env.local", SSL_CERTIFICATE_FILE="old.crt", SSL_CERTIFICATE_KEY_FILE="old.key"
    )
    assert nself("build", cwd=project).code == 0
    result, report = status(nself, project)
    assert result.code == 1 and "expired on" in result.err
    assert report["problems"] and report["days_left"] < 0  # type: ignore[operator]

    make_certificate(project, "other", "example.com")
    set_env(
        project,
        ".env.local",
        SSL_CERTIFICATE_FILE="other.crt",
        SSL_CERTIFICATE_KEY_FILE="other.key",
    )
    assert nself("build", cwd=project).code == 0
    result, report = status(nself, project)
    assert result.code == 1 and "does not cover api.local.nself.org" in result.err
    assert "api.local.nself.org" in report["uncovered"]  # type: ignore[operator]
    assert "local.nself.org" not in report["hosts"]  # the apex is not routed here

    make_certificate(project, "soon", "local.nself.org", days=10)
    set_env(
        project, ".env.local", SSL_CERTIFICATE_FILE="soon.crt", SSL_CERTIFICATE_KEY_FILE="soon.key"
    )
    assert nself("build", cwd=project).code == 0
    result = nself("ssl", "status", cwd=project)
    assert result.code == 0 and "expires within 30 days" in result.err


# -- nself ssl generate / install ------------------------------------------------------------


@pytest.fixture
def caroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if shutil.which("mkcert") is None:
        pytest.fail("mkcert is missing (scripts/test installs the Debian package)")
    root = tmp_path / "caroot"
    root.mkdir()
    monkeypatch.setenv("CAROOT", str(root))
    monkeypatch.setenv("TRUST_STORES", "nss")  # never the machine's system store
    return root


def test_install_and_generate_with_mkcert(project: Path, nself: Run, caroot: Path) -> None:
    result = nself("ssl", "install", cwd=project)
    assert result.code == 0, result.output
    assert (caroot / "rootCA.pem").is_file()
    result = nself("ssl", "generate", cwd=project)
    assert result.code == 0, result.output
    assert "mkcert's local CA" in result.out
    result, report = status(nself, project)
    assert result.code == 0 and not report["self_signed"]
    assert "mkcert development CA" in str(report["issuer"])
    # The CA that mkcert made signs the served certificate.
    served = project / "nginx" / "ssl" / "local.nself.org.crt"
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(caroot / "rootCA.pem"), str(served)],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert (project / "nginx" / "ssl" / "local.nself.org.key").stat().st_mode & 0o777 == 0o600
    assert nself("build", cwd=project).code == 0  # the build keeps it
    assert status(nself, project)[1]["issuer"] == report["issuer"]


def test_without_mkcert(project: Path, nself: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no mkcert (nor anything else) on PATH
    result = nself("ssl", "install", cwd=project)
    assert result.code == 1 and "mkcert is not installed" in result.err
    assert "apt install mkcert" in result.err
    result = nself("ssl", "generate", cwd=project)
    assert result.code == 0, result.output
    assert "self-signed" in result.out


def test_generate_is_for_local_only(
    project: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_certificate(project, "example", "local.nself.org")
    set_env(
        project,
        ".env.local",
        SSL_CERTIFICATE_FILE="example.crt",
        SSL_CERTIFICATE_KEY_FILE="example.key",
    )
    result = nself("ssl", "generate", cwd=project)
    assert result.code == 1 and "SSL_CERTIFICATE_FILE is set" in result.err
    before = sorted(p.name for p in (project / "nginx" / "ssl").iterdir())
    monkeypatch.setenv("NSELF_ENV", "staging")
    result = nself("ssl", "generate", cwd=project)
    assert result.code == 1 and "not ones for staging" in result.err
    assert "SSL_CERTIFICATE_FILE" in result.err
    assert sorted(p.name for p in (project / "nginx" / "ssl").iterdir()) == before


def test_an_own_certificate_named_like_the_dev_one_survives_builds(
    project: Path, nself: Run
) -> None:
    """Replacing the generated files with your own (same names) makes them yours."""
    assert nself("build", cwd=project).code == 0
    make_certificate(project, "local.nself.org", "local.nself.org", days=400)
    mine = (project / "nginx" / "ssl" / "local.nself.org.crt").read_bytes()
    set_env(
        project,
        ".env.local",
        SSL_CERTIFICATE_FILE="local.nself.org.crt",
        SSL_CERTIFICATE_KEY_FILE="local.nself.org.key",
    )
    for _ in range(2):
        result = nself("build", cwd=project)
        assert result.code == 0, result.output
        assert "removed" not in result.out
    assert (project / "nginx" / "ssl" / "local.nself.org.crt").read_bytes() == mine
    assert (project / "nginx" / "ssl" / "local.nself.org.key").is_file()


def test_certificate_names_nginx_cannot_use(project: Path, nself: Run, tmp_path: Path) -> None:
    make_certificate(project, "example", "local.nself.org")
    (project / "nginx" / "ssl" / "my cert.pem").write_text("x")
    set_env(
        project,
        ".env.local",
        SSL_CERTIFICATE_FILE='"my cert.pem"',
        SSL_CERTIFICATE_KEY_FILE="example.key",
    )
    result = nself("build", cwd=project)
    assert result.code == 1 and "is not a plain file name" in result.err
    # A link out of nginx/ (e.g. into an ACME client's folder) is dangling in the container.
    outside = tmp_path / "live.crt"
    outside.write_text("x")
    (project / "nginx" / "ssl" / "linked.crt").symlink_to(outside)
    set_env(project, ".env.local", SSL_CERTIFICATE_FILE="linked.crt")
    result = nself("build", cwd=project)
    assert result.code == 1 and "links outside nginx/" in result.err
