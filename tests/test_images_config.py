"""What nself generates for images that cannot run here (no container registry is
reachable, and no Debian package stands in for them faithfully): the generated
configuration is held against what their upstream documents say."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]


def built(nself: Run, folder: Path, **values: str) -> dict[str, Any]:
    set_env(folder, ".env.local", **values)
    result = nself("build", cwd=folder)
    assert result.code == 0, result.output
    doc: dict[str, Any] = yaml.safe_load((folder / "docker-compose.yml").read_text())
    return doc["services"]


def computed(folder: Path) -> dict[str, str]:
    lines = (folder / ".env.computed").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key: value.strip("'\"") for key, value in pairs}


def test_minio_console_is_configured_for_a_reverse_proxy(project: Path, nself: Run) -> None:
    # MinIO's reverse-proxy setup: the console at its own host via
    # MINIO_BROWSER_REDIRECT_URL; MINIO_SERVER_URL would make the console dial the public
    # host from inside the container, where it resolves to this machine or 127.0.0.1.
    services = built(nself, project, STORAGE_ENABLED="true")
    env = services["minio"]["environment"]
    assert "MINIO_SERVER_URL" not in env
    assert env["MINIO_BROWSER_REDIRECT_URL"] == "${MINIO_BROWSER_REDIRECT_URL}"
    values = computed(project)
    assert values["MINIO_BROWSER_REDIRECT_URL"] == "https://storage-console.local.nself.org"
    assert values["S3_PUBLIC_ENDPOINT"] == "https://storage.local.nself.org"
    assert "MINIO_SERVER_URL" not in values


def test_production_auth_without_a_mail_server_is_refused(project: Path, nself: Run) -> None:
    # hasura-auth requires a verified address by default: every sign-up sends a mail,
    # and fails with 500 when it cannot (go/controller/post_signup_email_password.go).
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    refused = nself("build", "--env", "prod", cwd=project)
    assert refused.code == 1
    errors = [line for line in refused.err.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: Auth has no mail server in prod: sign-up verification and password-reset "
        "mails would all fail"
    ]
    assert "MAIL_PROVIDER" in refused.err and "Traceback" not in refused.output
    set_env(project, ".env.prod", MAIL_ENABLED="true", MAIL_PROVIDER="postmark")
    set_env(project, ".env.prod", MAIL_SMTP_USER="server-token")
    set_env(project, ".env.secrets.prod", MAIL_SMTP_PASSWORD="server-token-secret-5f3a")
    result = nself("build", "--env", "prod", cwd=project)
    assert result.code == 0, result.output
    assert computed(project / ".nself/targets/prod")["AUTH_SMTP_HOST"] == "smtp.postmarkapp.com"


def test_dev_auth_without_mail_signs_up_without_verification(project: Path, nself: Run) -> None:
    services = built(nself, project)
    assert services["auth"]["environment"]["AUTH_EMAIL_SIGNIN_EMAIL_VERIFIED_REQUIRED"] == "false"
    services = built(nself, project, MAIL_ENABLED="true")
    # With mail, the account policy's setting (default true) reaches Auth.
    env = services["auth"]["environment"]
    assert env["AUTH_EMAIL_SIGNIN_EMAIL_VERIFIED_REQUIRED"] == (
        "${AUTH_EMAIL_SIGNIN_EMAIL_VERIFIED_REQUIRED}"
    )
    assert "AUTH_EMAIL_SIGNIN_EMAIL_VERIFIED_REQUIRED=true\n" in (
        (project / ".env.computed").read_text()
    )


def test_a_network_alias_cannot_shadow_a_service(project: Path, nself: Run) -> None:
    # The catcher also answers to "mailhog" (Auth's mailer may log in to it over
    # plaintext): a service of that name would make the name ambiguous on the network.
    set_env(project, MAIL_ENABLED="true", CS_1_NAME="mailhog", CS_1_IMAGE="nginx:1.27")
    set_env(project, CS_1_PORT="80")
    result = nself("build", cwd=project)
    assert result.code == 1
    assert "the network name 'mailhog' of service mail (mail) is already the name of " in (
        result.err
    )


def test_production_auth_with_a_mail_server_but_no_login_is_refused(
    project: Path, nself: Run
) -> None:
    # hasura-auth logs in on every mail, whatever the server offers (go/notifications/
    # stdlib.go: sendMail calls Auth unconditionally, PLAIN by default): a relay without a
    # login answers AUTH with an error, a login with an empty user fails, and every
    # verification and password-reset mail with it.
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    set_env(project, ".env.prod", MAIL_ENABLED="true", MAIL_PROVIDER="smtp")
    set_env(project, ".env.prod", MAIL_SMTP_HOST="relay.internal", MAIL_SMTP_PORT="25")
    refused = nself("build", "--env", "prod", cwd=project)
    assert refused.code == 1
    errors = [line for line in refused.err.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: Auth logs in to its mail server on every mail, and no SMTP user is set for "
        "relay.internal: sign-up verification and password-reset mails would all fail"
    ]
    assert "MAIL_SMTP_USER" in refused.err and "Traceback" not in refused.output
    set_env(project, ".env.prod", MAIL_SMTP_USER="nself")
    set_env(project, ".env.secrets.prod", MAIL_SMTP_PASSWORD="relay-password-5f3a9c")
    result = nself("build", "--env", "prod", cwd=project)
    assert result.code == 0, result.output
    values = computed(project / ".nself/targets/prod")
    assert (values["AUTH_SMTP_HOST"], values["AUTH_SMTP_USER"]) == ("relay.internal", "nself")

    # AUTH_SMTP_HOST set by hand, without MAIL: the same rule.
    set_env(project, ".env.prod", MAIL_ENABLED="false", AUTH_SMTP_HOST="smtp.example.com")
    refused = nself("build", "--env", "prod", cwd=project)
    assert refused.code == 1 and "no SMTP user is set for smtp.example.com" in refused.err
