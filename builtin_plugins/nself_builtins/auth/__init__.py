"""nhost/hasura-auth at auth.{domain}, wired to Postgres and Hasura."""

from __future__ import annotations

from nself_builtins.shared.urls import public_url
from nself_sdk import Config, HealthCheck, Problem, Route, Service, Setting, hookimpl

IMAGE = "nhost/hasura-auth:0.36.0"


def enabled(config: Config) -> bool:
    return config.flag("AUTH_ENABLED", True)


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting("AUTH_ENABLED", "true", "Run the Auth service."),
        Setting("AUTH_IMAGE", IMAGE, "Auth image."),
        Setting("AUTH_SUBDOMAIN", "auth", "Public subdomain of the Auth API."),
        Setting(
            "AUTH_CLIENT_URL",
            None,
            "Frontend URL for redirects (default: https://BASE_DOMAIN, with the HTTPS port "
            "when it is not 443).",
        ),
        Setting("AUTH_SMTP_HOST", "", "SMTP server for auth mail (mail plugin sets it)."),
        Setting("AUTH_SMTP_PORT", "587", "SMTP port."),
        Setting("AUTH_SMTP_USER", "", "SMTP user."),
        Setting("AUTH_SMTP_PASS", "", "SMTP password.", secret=True),
        Setting("AUTH_SMTP_SECURE", "false", "SMTP over TLS."),
        Setting("AUTH_SMTP_SENDER", "noreply@${BASE_DOMAIN}", "From address of auth mail."),
    ]


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    if not enabled(config):
        return [Problem("warning", "AUTH_ENABLED=false: the stack has no authentication")]
    if not config.flag("HASURA_ENABLED", True):
        return [
            Problem(
                "error",
                "Auth needs Hasura, but HASURA_ENABLED=false",
                "enable Hasura or set AUTH_ENABLED=false",
            )
        ]
    return []


@hookimpl
def contribute_env(config: Config) -> dict[str, str]:
    if not enabled(config):
        return {}
    # The addresses users' browsers and mail links reach: with the HTTPS port nginx
    # publishes when it is not 443.
    return {
        "AUTH_SERVER_URL": public_url(config, config.text("AUTH_SUBDOMAIN", "auth")),
        "AUTH_CLIENT_URL": public_url(config),
    }


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    if not enabled(config):
        return []
    env = {
        "AUTH_HOST": "0.0.0.0",
        "AUTH_PORT": "4000",
        "AUTH_SERVER_URL": "${AUTH_SERVER_URL}",
        "AUTH_CLIENT_URL": "${AUTH_CLIENT_URL}",
        "HASURA_GRAPHQL_DATABASE_URL": "${DATABASE_URL}",
        "HASURA_GRAPHQL_GRAPHQL_URL": "${HASURA_GRAPHQL_URL}",
        "HASURA_GRAPHQL_ADMIN_SECRET": "${HASURA_GRAPHQL_ADMIN_SECRET}",
        "HASURA_GRAPHQL_JWT_SECRET": "${HASURA_GRAPHQL_JWT_SECRET}",
        "AUTH_LOG_LEVEL": "info" if not config.is_local else "debug",
    }
    # Mail settings only when a server is configured (the mail plugin derives them), so
    # a stack without mail needs no SMTP password.
    smtp = ["HOST", "PORT", "SECURE", "SENDER"] if config.text("AUTH_SMTP_HOST") else []
    if smtp and config.text("AUTH_SMTP_USER"):
        smtp += ["USER", "PASS"]
    env.update({f"AUTH_SMTP_{key}": "${AUTH_SMTP_" + key + "}" for key in smtp})
    return [
        Service(
            name="auth",
            title="Auth",
            image=config.text("AUTH_IMAGE", IMAGE),
            port=4000,
            environment=env,
            healthcheck=HealthCheck(
                ("CMD", "wget", "-q", "--spider", "http://localhost:4000/healthz"),
                interval="10s",
                timeout="5s",
                retries=10,
                start_period="30s",
            ),
            depends_on=("postgres", "hasura"),
            health_url="http://auth:4000/healthz",
        )
    ]


@hookimpl
def contribute_nginx(config: Config) -> list[Route]:
    if not enabled(config):
        return []
    return [
        Route(config.text("AUTH_SUBDOMAIN", "auth"), "auth", 4000, service="auth", rate_zone="auth")
    ]
