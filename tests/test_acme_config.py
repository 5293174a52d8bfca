"""ACME settings and what a build makes of them (no engine needed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kernel_helpers import mail_server
from nself_sdk import plan
from nself_sdk.contract import problems
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]


def routed(folder: Path) -> None:
    set_env(
        folder,
        ".env.dev",
        CS_1_NAME="api",
        CS_1_IMAGE="example/api:1",
        CS_1_PORT="8001",
        CS_1_SUBDOMAIN="shop",
    )


def test_staging_and_prod_get_acme_dev_does_not(project: Path, nself: Run) -> None:
    routed(project)
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    mail_server(project)
    dev = plan(project)
    assert dev.stack.service("acme") is None
    prod = plan(project, "prod")
    acme = prod.stack.service("acme")
    nginx = prod.stack.service("nginx")
    assert acme is not None and nginx is not None
    assert nginx.depends_on == ("acme",) and nginx.command == (
        "sh",
        "/etc/nginx/nself/nself-run.sh",
    )
    assert problems(acme, prod.config, prod.files, prod.stack.routes) == []
    files = {f.path: f for f in prod.files}
    certificates = json.loads(str(files["acme/certificates.json"].content))
    hosts = {f"{sub}.local.nself.org" for sub in ("api", "auth", "monitor", "shop")}
    assert certificates["certificates"] == {host: [host] for host in hosts}
    assert certificates["directory"] == "https://acme-v02.api.letsencrypt.org/directory"
    site = str(files["nginx/sites/shop.conf"].content)
    assert "ssl_certificate /etc/nginx/certs/live/shop.local.nself.org/fullchain.pem;" in site
    default = str(files["nginx/sites/00-default.conf"].content)
    assert "alias /etc/nginx/certs/challenges/;" in default
    # The staging switch and the renewer's own copy of the program.
    set_env(project, ".env.prod", ACME_STAGING="true")
    staged = {f.path: f for f in plan(project, "prod").files}
    directory = json.loads(str(staged["acme/certificates.json"].content))["directory"]
    assert directory == "https://acme-staging-v02.api.letsencrypt.org/directory"
    renewer = Path(__file__).parents[1] / "builtin_plugins/nself_builtins/tls/renewer.py"
    assert staged["acme/renewer.py"].content == renewer.read_text()


def test_a_wildcard_with_a_dns_hook(project: Path, nself: Run) -> None:
    routed(project)
    (project / "dns.sh").write_text("#!/bin/sh\nexit 0\n")
    set_env(project, SSL_MODE="acme", ACME_DNS_HOOK="dns.sh", ACME_DNS_ENV_TOKEN="t0ken")
    built = plan(project)
    files = {f.path: f for f in built.files}
    data = json.loads(str(files["acme/certificates.json"].content))
    assert data["certificates"] == {
        "_wildcard.local.nself.org": ["local.nself.org", "*.local.nself.org"]
    }
    assert data["dns_hook"] == "/nself/dns-hook" and files["acme/dns-hook"].mode == 0o755
    acme = built.stack.service("acme")
    assert acme is not None and acme.environment["ACME_DNS_ENV_TOKEN"] == "${ACME_DNS_ENV_TOKEN}"
    assert "live/_wildcard.local.nself.org/" in str(files["nginx/sites/shop.conf"].content)


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"SSL_MODE": "letsencrypt"}, "is not auto, acme or local"),
        ({"SSL_MODE": "acme", "SSL_CERTIFICATE_FILE": "x.crt"}, "SSL_CERTIFICATE_FILE is set"),
        ({"SSL_MODE": "acme", "ACME_DIRECTORY_URL": "http://ca.test/dir"}, "not an https://"),
        ({"SSL_MODE": "acme", "ACME_EMAIL": "nobody"}, "is no address"),
        ({"SSL_MODE": "acme", "ACME_KEY_TYPE": "dsa"}, "ACME_KEY_TYPE must be one of"),
        ({"SSL_MODE": "acme", "ACME_RENEW_DAYS": "0"}, "ACME_RENEW_DAYS must be 1-365"),
        ({"SSL_MODE": "acme", "ACME_CA_BUNDLE": "missing.pem"}, "missing.pem does not exist"),
        ({"SSL_MODE": "acme", "ACME_CA_BUNDLE": "../x.pem"}, "is outside the project"),
        ({"SSL_MODE": "acme", "ACME_CA_BUNDLE": ".env.dev"}, "holds no PEM certificate"),
        ({"SSL_MODE": "acme", "ACME_DNS_HOOK": "nope.sh"}, "nope.sh does not exist"),
    ],
)
def test_bad_acme_settings_stop_the_build(
    project: Path, nself: Run, values: dict[str, str], said: str
) -> None:
    set_env(project, **values)
    result = nself("build", cwd=project)
    assert result.code == 1 and said in result.err, result.output
    assert "Traceback" not in result.output
    assert not (project / "docker-compose.yml").exists()


def test_certificate_alerts_fire(project: Path, nself: Run, tmp_path: Path) -> None:
    """The monitoring stack's rules over the renewer's metrics, run by the real promtool."""
    import shutil
    import subprocess

    import yaml

    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing (Debian: prometheus; scripts/test installs it)")
    set_env(project, SSL_MODE="acme", MONITORING_ENABLED="true")
    assert nself("build", cwd=project).code == 0
    prometheus = (project / "monitoring/prometheus/prometheus.yml").read_text()
    assert "- acme:9110" in prometheus
    rules = project / "monitoring/prometheus/rules/nself.yml"
    series = 'nself_certificate_{}{{certificate="api.local.nself.org"}}'
    defined = {
        rule["alert"]: rule
        for group in yaml.safe_load(rules.read_text())["groups"]
        for rule in group["rules"]
    }

    def labels(name: str) -> dict[str, str]:
        return {"certificate": "api.local.nself.org", **defined[name]["labels"]}

    def said(name: str) -> dict[str, str]:
        text = defined[name]["annotations"]
        return {k: v.replace("{{ $labels.certificate }}", "api.local.nself.org")
                for k, v in text.items()}  # fmt: skip

    spec = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # expired at t=0; one failure since t=0; placeholder the whole time
                    {"series": series.format("expiry_timestamp_seconds"), "values": "0x200"},
                    {"series": series.format("renewal_failures"), "values": "1x200"},
                    {"series": series.format("placeholder"), "values": "1x200"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": f"{minutes}m",
                        "alertname": name,
                        "exp_alerts": [{"exp_labels": labels(name), "exp_annotations": said(name)}],
                    }
                    for name, minutes in (
                        ("CertificateExpired", 5),
                        ("CertificateExpiresSoon", 90),
                        ("CertificateRenewalFailing", 90),
                        ("CertificateNotIssued", 150),
                    )
                ],
            }
        ],
    }
    test_file = tmp_path / "certificates.test.yml"
    test_file.write_text(yaml.safe_dump(spec))
    checked = subprocess.run(
        ["promtool", "test", "rules", str(test_file)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
