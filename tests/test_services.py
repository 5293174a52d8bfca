"""The optional services and monitoring: what each flag puts into the generated stack."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

from kernel_helpers import mail_server
from nself_sdk.testing import Result, set_env

Nself = Callable[..., Result]

OPTIONAL_IMAGES = {
    "admin": "ADMIN_IMAGE",
    "minio": "MINIO_IMAGE",
    "redis": "REDIS_IMAGE",
    "functions": "FUNCTIONS_IMAGE",
    "mail": "MAIL_IMAGE",
    "meilisearch": "MEILISEARCH_IMAGE",
    "prometheus": "PROMETHEUS_IMAGE",
    "grafana": "GRAFANA_IMAGE",
    "loki": "LOKI_IMAGE",
    "promtail": "PROMTAIL_IMAGE",
    "tempo": "TEMPO_IMAGE",
    "alertmanager": "ALERTMANAGER_IMAGE",
    "cadvisor": "CADVISOR_IMAGE",
    "node-exporter": "NODE_EXPORTER_IMAGE",
    "postgres-exporter": "POSTGRES_EXPORTER_IMAGE",
    "redis-exporter": "REDIS_EXPORTER_IMAGE",
}
ALL_ON = {
    "ADMIN_ENABLED": "true",
    "STORAGE_ENABLED": "true",
    "REDIS_ENABLED": "true",
    "FUNCTIONS_ENABLED": "true",
    "MAIL_ENABLED": "true",
    "SEARCH_ENABLED": "true",
    "MONITORING_ENABLED": "true",
}
MONITORING = {
    "prometheus",
    "grafana",
    "loki",
    "promtail",
    "tempo",
    "alertmanager",
    "cadvisor",
    "node-exporter",
    "postgres-exporter",
}


def strong_secrets(folder: Path, mail: bool = True, **extra: str) -> None:
    """Fresh, strong values in staging's and prod's secrets files for every secret `nself
    init` generated, and (``mail``) a mail server, which Auth needs outside dev."""
    generated = [
        k for k in dotenv_values(folder / ".env.dev") if k not in ("PROJECT_NAME", "BASE_DOMAIN")
    ]
    values = {k: secrets.token_urlsafe(32) for k in generated}
    values["HASURA_GRAPHQL_JWT_SECRET"] = '{"type":"HS256","key":"${HASURA_JWT_KEY}"}'
    values.update(extra)
    set_env(folder, ".env.secrets.staging", **values)
    set_env(folder, ".env.secrets.prod", **values)
    if mail:
        mail_server(folder)


# Where a prod build on this machine goes (the local stack's files stay as they are).
PROD = Path(".nself/targets/prod")


def build(nself: Nself, folder: Path, *args: str) -> Result:
    result = nself("build", *args, cwd=folder)
    assert result.code == 0, result.output
    return result


def compose(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((folder / "docker-compose.yml").read_text())
    return data


def computed(folder: Path) -> dict[str, str | None]:
    return dotenv_values(folder / ".env.computed", interpolate=False)


def site(folder: Path, name: str) -> str:
    return (folder / "nginx" / "sites" / f"{name}.conf").read_text()


# -- defaults -------------------------------------------------------------------------------


def test_optional_services_are_off_by_default_in_dev(project: Path, nself: Nself) -> None:
    build(nself, project)
    assert set(compose(project)["services"]) == {"postgres", "hasura", "auth", "nginx"}


def test_every_optional_service_joins_with_its_flag(project: Path, nself: Nself) -> None:
    set_env(project, **ALL_ON)
    build(nself, project)
    services = compose(project)["services"]
    expected = {"admin", "minio", "redis", "functions", "mail", "meilisearch", "redis-exporter"}
    assert expected | MONITORING <= set(services)
    for name, body in services.items():
        assert "healthcheck" in body, name
        assert body["restart"] == "unless-stopped", name
        assert all(d["condition"] == "service_healthy" for d in body.get("depends_on", {}).values())
        if name not in ("nginx", "admin"):
            assert "ports" not in body, name
    roles = {n: b["labels"]["org.nself.role"] for n, b in services.items()}
    assert {roles[n] for n in MONITORING} == {"monitoring"}
    assert {roles[n] for n in ("admin", "minio", "redis", "mail", "meilisearch")} == {"optional"}


def test_every_image_can_be_overridden(project: Path, nself: Nself) -> None:
    images = {
        var: f"registry.internal:5000/mirror/{svc}:pinned" for svc, var in OPTIONAL_IMAGES.items()
    }
    set_env(project, **ALL_ON, **images)
    build(nself, project)
    services = compose(project)["services"]
    for service, variable in OPTIONAL_IMAGES.items():
        assert services[service]["image"] == images[variable]


# -- admin ---------------------------------------------------------------------------------


def test_admin_is_published_on_loopback_only(project: Path, nself: Nself) -> None:
    set_env(project, ADMIN_ENABLED="true", ADMIN_PORT="3031")
    build(nself, project)
    assert compose(project)["services"]["admin"]["ports"] == ["127.0.0.1:3031:3021/tcp"]


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_admin_is_refused_outside_dev_with_one_error_line(
    project: Path, nself: Nself, env: str
) -> None:
    set_env(project, f".env.{env}", ADMIN_ENABLED="true")
    result = nself("build", "--env", env, cwd=project)
    assert result.code == 1
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.err
    assert "ADMIN_ENABLED" in errors[0] and env in errors[0]
    assert "Traceback" not in result.output
    assert not (project / "docker-compose.yml").exists()


def test_admin_in_env_local_never_reaches_prod(project: Path, nself: Nself) -> None:
    set_env(project, ADMIN_ENABLED="true")  # .env.local applies to dev only
    strong_secrets(project)
    build(nself, project, "--env", "prod")
    assert "admin" not in compose(project / PROD)["services"]


# -- redis ---------------------------------------------------------------------------------


def test_redis_requires_its_password(project: Path, nself: Nself) -> None:
    set_env(project, REDIS_ENABLED="true")
    build(nself, project)
    redis = compose(project)["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == "${REDIS_PASSWORD}"
    assert redis["environment"]["REDISCLI_AUTH"] == "${REDIS_PASSWORD}"
    env = computed(project)
    password = env["REDIS_PASSWORD"]
    assert password and len(password) >= 32
    assert env["REDIS_URL"] == f"redis://:{password}@redis:6379/0"


def test_redis_without_a_password_is_refused(project: Path, nself: Nself) -> None:
    set_env(project, REDIS_ENABLED="true", REDIS_PASSWORD="")
    result = nself("build", cwd=project)
    assert result.code == 1
    assert "REDIS_PASSWORD" in result.err


# -- storage -------------------------------------------------------------------------------


def test_storage_routes_s3_with_large_bodies_and_keeps_console_private(
    project: Path, nself: Nself
) -> None:
    set_env(project, STORAGE_ENABLED="true")
    build(nself, project)
    s3 = site(project, "storage")
    assert "server_name storage.local.nself.org;" in s3
    assert "client_max_body_size 5g;" in s3
    assert "http://minio:9000" in s3 and "proxy_request_buffering off;" in s3
    console = site(project, "storage-console")
    assert "http://minio:9001" in console and "auth_basic_user_file" in console
    env = computed(project)
    assert env["S3_ENDPOINT"] == "http://minio:9000"
    assert env["S3_PUBLIC_ENDPOINT"] == "https://storage.local.nself.org"
    minio = compose(project)["services"]["minio"]
    assert minio["environment"]["MINIO_ROOT_PASSWORD"] == "${MINIO_ROOT_PASSWORD}"


def test_storage_console_is_not_routed_in_prod_by_default(project: Path, nself: Nself) -> None:
    set_env(project, ".env.prod", STORAGE_ENABLED="true", MONITORING_ENABLED="false")
    strong_secrets(project)
    build(nself, project, "--env", "prod")
    sites = {p.stem for p in (project / PROD / "nginx" / "sites").glob("*.conf")}
    assert "storage" in sites and "storage-console" not in sites


# -- functions and search --------------------------------------------------------------------


def test_functions_and_search_get_their_routes(project: Path, nself: Nself) -> None:
    set_env(project, FUNCTIONS_ENABLED="true", SEARCH_ENABLED="true")
    build(nself, project)
    assert "http://functions:3000" in site(project, "functions")
    assert "http://meilisearch:7700" in site(project, "search")
    services = compose(project)["services"]
    assert services["functions"]["depends_on"] == {"hasura": {"condition": "service_healthy"}}
    assert services["meilisearch"]["environment"]["MEILI_MASTER_KEY"] == "${MEILI_MASTER_KEY}"
    assert services["meilisearch"]["environment"]["MEILI_ENV"] == "development"


def test_search_runs_in_production_mode_in_prod(project: Path, nself: Nself) -> None:
    set_env(project, ".env.prod", SEARCH_ENABLED="true")
    strong_secrets(project)
    build(nself, project, "--env", "prod")
    services = compose(project / PROD)["services"]
    assert services["meilisearch"]["environment"]["MEILI_ENV"] == "production"


# -- mail ------------------------------------------------------------------------------------


def test_mail_in_dev_is_a_catcher_wired_to_auth(project: Path, nself: Nself) -> None:
    set_env(project, MAIL_ENABLED="true")
    build(nself, project)
    services = compose(project)["services"]
    assert services["mail"]["environment"]["MP_SMTP_BIND_ADDR"] == "0.0.0.0:1025"
    ui = site(project, "mail")
    assert "http://mail:8025" in ui and "auth_basic_user_file" in ui
    env = computed(project)
    # Auth reaches the catcher as "mailhog", a host its mailer may log in to without TLS;
    # other clients use "mail". Mailpit accepts any login, over plaintext too.
    assert (env["AUTH_SMTP_HOST"], env["AUTH_SMTP_PORT"]) == ("mailhog", "1025")
    assert env["MAIL_SMTP_HOST"] == "mail"
    assert services["mail"]["networks"] == {"nself": {"aliases": ["mailhog"]}}
    assert services["mail"]["environment"]["MP_SMTP_AUTH_ACCEPT_ANY"] == "1"
    assert services["mail"]["environment"]["MP_SMTP_AUTH_ALLOW_INSECURE"] == "1"
    assert services["auth"]["environment"]["AUTH_SMTP_HOST"] == "${AUTH_SMTP_HOST}"
    assert "AUTH_SMTP_PASS" not in services["auth"]["environment"]


PRESET_CASES = [
    ("sendgrid", {}, "smtp.sendgrid.net", "587", "false", "apikey"),
    (
        "ses",
        {"MAIL_REGION": "eu-west-1"},
        "email-smtp.eu-west-1.amazonaws.com",
        "587",
        "false",
        "AKIAEXAMPLE",
    ),
    ("resend", {}, "smtp.resend.com", "465", "true", "resend"),
    ("postmark", {}, "smtp.postmarkapp.com", "587", "false", "AKIAEXAMPLE"),
    ("Amazon-SES", {}, "email-smtp.us-east-1.amazonaws.com", "587", "false", "AKIAEXAMPLE"),
    ("fastmail", {}, "smtp.fastmail.com", "465", "true", "AKIAEXAMPLE"),
    (
        "smtp",
        {"MAIL_SMTP_HOST": "relay.corp", "MAIL_SMTP_PORT": "2525"},
        "relay.corp",
        "2525",
        "false",
        "AKIAEXAMPLE",
    ),
]


@pytest.mark.parametrize(("provider", "extra", "host", "port", "secure", "user"), PRESET_CASES)
def test_mail_presets_fill_smtp_settings_for_auth(
    project: Path,
    nself: Nself,
    provider: str,
    extra: dict[str, str],
    host: str,
    port: str,
    secure: str,
    user: str,
) -> None:
    fixed_user = {} if provider in ("sendgrid", "resend") else {"MAIL_SMTP_USER": user}
    set_env(project, MAIL_ENABLED="true", MAIL_PROVIDER=provider, **extra, **fixed_user)
    set_env(project, ".env.secrets", MAIL_SMTP_PASSWORD="SG.k3y-" + secrets.token_hex(16))
    build(nself, project)
    env = computed(project)
    assert (env["AUTH_SMTP_HOST"], env["AUTH_SMTP_PORT"], env["AUTH_SMTP_SECURE"]) == (
        host,
        port,
        secure,
    )
    assert env["AUTH_SMTP_USER"] == user
    assert env["AUTH_SMTP_PASS"] and env["AUTH_SMTP_PASS"].startswith("SG.k3y-")
    assert "mail" not in compose(project)["services"]  # no catcher with a real provider


def test_there_are_at_least_sixteen_presets() -> None:
    from nself_builtins.mail.presets import PRESETS

    assert len(PRESETS) >= 16
    for required in ("sendgrid", "mailgun", "ses", "postmark", "resend", "brevo", "mailjet",
                     "sparkpost", "gmail", "office365", "zoho", "fastmail", "smtp2go",
                     "elasticemail", "mandrill", "protonmail-bridge"):  # fmt: skip
        assert required in PRESETS


def test_an_env_file_value_beats_the_mail_derived_one(project: Path, nself: Nself) -> None:
    set_env(project, MAIL_ENABLED="true", AUTH_SMTP_HOST="smtp.team.example")
    build(nself, project)
    assert computed(project)["AUTH_SMTP_HOST"] == "smtp.team.example"


def test_unknown_mail_provider_is_one_clear_error(project: Path, nself: Nself) -> None:
    set_env(project, MAIL_ENABLED="true", MAIL_PROVIDER="pigeon-post")
    result = nself("build", cwd=project)
    assert result.code == 1
    assert "unknown MAIL_PROVIDER 'pigeon-post'" in result.err
    assert "sendgrid" in result.err and "Traceback" not in result.output


def test_mail_in_prod_needs_a_provider(project: Path, nself: Nself) -> None:
    set_env(project, ".env.prod", MAIL_ENABLED="true")
    strong_secrets(project, mail=False)
    result = nself("build", "--env", "prod", cwd=project)
    assert result.code == 1
    assert "MAIL_PROVIDER is not set for prod" in result.err


def test_provider_without_password_is_refused(project: Path, nself: Nself) -> None:
    set_env(project, MAIL_ENABLED="true", MAIL_PROVIDER="sendgrid")
    result = nself("build", cwd=project)
    assert result.code == 1
    assert "MAIL_SMTP_PASSWORD" in result.err


# -- monitoring ------------------------------------------------------------------------------


def test_monitoring_is_on_by_default_in_prod(project: Path, nself: Nself) -> None:
    strong_secrets(project)
    build(nself, project, "--env", "prod")
    services = compose(project / PROD)["services"]
    assert set(services) >= MONITORING
    assert "redis-exporter" not in services  # no Redis, no exporter
    grafana = site(project / PROD, "monitor")
    assert "http://grafana:3000" in grafana and "# private: its own login" in grafana


def test_monitoring_is_off_in_dev_unless_set(project: Path, nself: Nself) -> None:
    build(nself, project)
    assert not MONITORING & set(compose(project)["services"])
    assert not (project / "monitoring").exists()
    set_env(project, MONITORING_ENABLED="true", REDIS_ENABLED="true")
    build(nself, project)
    assert MONITORING | {"redis-exporter"} <= set(compose(project)["services"])


def test_monitoring_can_be_switched_off_in_prod(project: Path, nself: Nself) -> None:
    set_env(project, ".env.prod", MONITORING_ENABLED="false")
    strong_secrets(project)
    build(nself, project, "--env", "prod")
    assert not MONITORING & set(compose(project / PROD)["services"])


def test_grafana_provisioning_is_mounted_where_grafana_reads_it(
    project: Path, nself: Nself
) -> None:
    set_env(project, MONITORING_ENABLED="true")
    build(nself, project)
    grafana = compose(project)["services"]["grafana"]
    target = grafana["environment"]["GF_PATHS_PROVISIONING"]
    mounts = dict(reversed(v.split(":")[:2]) for v in grafana["volumes"])
    source = project / mounts[target]
    datasources = yaml.safe_load((source / "datasources" / "nself.yml").read_text())
    by_uid = {d["uid"]: d for d in datasources["datasources"]}
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["loki"]["url"] == "http://loki:3100"
    assert by_uid["tempo"]["url"] == "http://tempo:3200"
    provider = yaml.safe_load((source / "dashboards" / "nself.yml").read_text())
    dashboards = provider["providers"][0]["options"]["path"]
    assert (project / mounts[dashboards] / "nself-overview.json").is_file()


def test_disabling_monitoring_removes_its_files(project: Path, nself: Nself) -> None:
    set_env(project, MONITORING_ENABLED="true")
    build(nself, project)
    assert (project / "monitoring/prometheus/prometheus.yml").is_file()
    set_env(project, MONITORING_ENABLED="false")
    build(nself, project)
    assert not (project / "monitoring/prometheus/prometheus.yml").exists()


def test_prometheus_scrapes_what_runs(project: Path, nself: Nself) -> None:
    set_env(project, MONITORING_ENABLED="true", STORAGE_ENABLED="true", CADVISOR_ENABLED="false")
    build(nself, project)
    config = yaml.safe_load((project / "monitoring/prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["minio"]["metrics_path"] == "/minio/v2/metrics/cluster"
    assert "cadvisor" not in jobs and "redis" not in jobs
    assert "cadvisor" not in compose(project)["services"]


def test_bad_retention_is_refused(project: Path, nself: Nself) -> None:
    set_env(project, MONITORING_ENABLED="true", TEMPO_RETENTION="7d")
    result = nself("build", cwd=project)
    assert result.code == 1
    assert "TEMPO_RETENTION='7d' is not a duration" in result.err


def test_two_builds_are_identical(project: Path, nself: Nself) -> None:
    set_env(project, **ALL_ON)
    build(nself, project)
    first = {p: p.read_bytes() for p in (project / "monitoring").rglob("*") if p.is_file()}
    result = build(nself, project)
    assert "no changes" in result.out
    assert first == {p: p.read_bytes() for p in (project / "monitoring").rglob("*") if p.is_file()}
