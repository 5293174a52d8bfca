"""nhost/hasura-auth at auth.{domain}, wired to Postgres and Hasura."""

from __future__ import annotations

from dataclasses import replace

from nself_builtins.shared.urls import public_url
from nself_sdk import (
    Config,
    Finding,
    HealthCheck,
    ImageContract,
    Problem,
    Service,
    ServicePlugin,
    Setting,
    Stack,
    Subdomain,
    hookimpl,
)
from nself_sdk.envfiles import secrets_file

IMAGE = "nhost/hasura-auth:0.36.0"
AUTH = ImageContract(
    image=IMAGE,
    source=(
        "https://github.com/nhost/hasura-auth/blob/v0.36.0/flake.nix",
        "https://github.com/nhost/nixops/blob/main/lib/go/go.nix",
        "https://github.com/nhost/hasura-auth/blob/v0.36.0/.github/workflows/wf_docker_push_image.yaml",
        "https://github.com/nhost/hasura-auth/blob/v0.36.0/docs/environment-variables.md",
    ),
    # A nix2container image without a User: the hasura-auth binary (a wrapper that puts
    # nodejs on PATH), CA certificates, /tmp, and `contents = [ wget ]`. No shell.
    user=0,
    capabilities=(),
    writable=(),
    tools=("hasura-auth", "wget", "node"),
    env=("AUTH_*", "HASURA_GRAPHQL_*"),
    # It applies its own migrations and metadata through Hasura at start.
    required=(
        "HASURA_GRAPHQL_DATABASE_URL",
        "HASURA_GRAPHQL_GRAPHQL_URL",
        "HASURA_GRAPHQL_ADMIN_SECRET",
        "HASURA_GRAPHQL_JWT_SECRET",
    ),
    ports=(4000,),
    # skopeo pushes x86_64 and aarch64 images and a manifest list over both.
    platforms=("linux/amd64", "linux/arm64"),
    notes="Its mailer always authenticates with PLAIN, which Go refuses over plain SMTP "
    "except to localhost, 127.0.0.1, ::1 (and mailhog).",
)


def _checks(config: Config) -> list[Problem]:
    if not config.flag("HASURA_ENABLED", True):
        return [
            Problem(
                "error",
                "Auth needs Hasura, but HASURA_ENABLED=false",
                "enable Hasura or set AUTH_ENABLED=false",
            )
        ]
    return []


def _env(config: Config) -> dict[str, str]:
    # The addresses users' browsers and mail links reach: with the HTTPS port nginx
    # publishes when it is not 443.
    return {
        "AUTH_SERVER_URL": public_url(config, config.text("AUTH_SUBDOMAIN", "auth")),
        "AUTH_CLIENT_URL": public_url(config),
    }


# The account policy passed on as set (hasura-auth's own defaults are weaker: a 3-character
# minimum; docs/environment-variables.md of the pinned version).
POLICY = (
    "AUTH_PASSWORD_MIN_LENGTH",
    "AUTH_MFA_ENABLED",
    "AUTH_EMAIL_SIGNIN_EMAIL_VERIFIED_REQUIRED",
    "AUTH_ACCESS_TOKEN_EXPIRES_IN",
    "AUTH_REFRESH_TOKEN_EXPIRES_IN",
)
POLICY_SETTINGS = (
    Setting("AUTH_PASSWORD_MIN_LENGTH", "12", "Shortest password Auth accepts."),
    Setting(
        "AUTH_PASSWORD_HIBP_ENABLED",
        None,
        "Refuse passwords known from breaches (Have I Been Pwned); default: on outside dev.",
    ),
    Setting("AUTH_MFA_ENABLED", "true", "Let users add a second factor (TOTP)."),
    Setting("AUTH_MFA_TOTP_ISSUER", None, "Name authenticator apps show (default: the project's)."),
    Setting(
        "AUTH_EMAIL_SIGNIN_EMAIL_VERIFIED_REQUIRED",
        "true",
        "Sign in with an email address only once it is verified.",
    ),
    Setting(
        "AUTH_CONCEAL_ERRORS",
        None,
        "Answer sign-in errors without saying whether the account exists; default: on outside dev.",
    ),
    Setting("AUTH_ACCESS_TOKEN_EXPIRES_IN", "900", "Seconds an access token (JWT) lives."),
    Setting("AUTH_REFRESH_TOKEN_EXPIRES_IN", "2592000", "Seconds a refresh token lives (30 days)."),
)


def not_in_dev(config: Config, name: str) -> bool:
    """A switch that is on outside dev unless the env files say otherwise."""
    return config.flag(name, not config.is_local)


def _adapt(config: Config, service: Service) -> Service:
    env = dict(service.environment, AUTH_LOG_LEVEL="info" if not config.is_local else "debug")
    env.update({name: "${" + name + "}" for name in POLICY})
    for name in ("AUTH_PASSWORD_HIBP_ENABLED", "AUTH_CONCEAL_ERRORS"):
        env[name] = str(not_in_dev(config, name)).lower()
    env["AUTH_MFA_TOTP_ISSUER"] = (
        "${AUTH_MFA_TOTP_ISSUER}"
        if config.get("AUTH_MFA_TOTP_ISSUER") is not None
        else config.project_name
    )
    # Mail settings only when a server is configured (the mail plugin derives them), so
    # a stack without mail needs no SMTP password.
    smtp = ["HOST", "PORT", "SECURE", "SENDER"] if config.text("AUTH_SMTP_HOST") else []
    if smtp and config.text("AUTH_SMTP_USER"):
        smtp += ["USER", "PASS"]
    env.update({f"AUTH_SMTP_{key}": "${AUTH_SMTP_" + key + "}" for key in smtp})
    if not smtp:
        # Dev without mail (outside dev the build refuses that): nowhere to send a
        # verification mail, so a sign-up signs in at once instead of failing with 500.
        env["AUTH_EMAIL_SIGNIN_EMAIL_VERIFIED_REQUIRED"] = "false"
    return replace(service, environment=env)


# The dev catcher's name on the network (the mail plugin's alias): it accepts any login.
CATCHER_HOST = "mailhog"


def _login_problems(config: Config) -> list[Problem]:
    """hasura-auth logs in on every mail whatever the server offers (go/notifications/
    stdlib.go: sendMail calls Auth unconditionally, PLAIN unless AUTH_SMTP_AUTH_METHOD
    says otherwise): a relay without logins answers AUTH with an error, an empty user is
    refused, and each verification or reset mail fails with it."""
    host = config.text("AUTH_SMTP_HOST")
    if config.text("AUTH_SMTP_USER") or host == CATCHER_HOST:
        return []
    return [
        Problem(
            "error",
            "Auth logs in to its mail server on every mail, and no SMTP user is set for "
            f"{host}: sign-up verification and password-reset mails would all fail",
            f"set MAIL_SMTP_USER, and MAIL_SMTP_PASSWORD in {secrets_file(config.env)} (or "
            "AUTH_SMTP_USER and AUTH_SMTP_PASS); a relay that takes no login cannot carry "
            "Auth's mail",
        )
    ]


class AuthPlugin(ServicePlugin):
    """Auth: a mail server outside dev, and its part of the hardening suite."""

    @hookimpl
    def validate_files(self, config: Config, stack: Stack) -> list[Problem]:
        """Outside dev, Auth must have a mail server: every sign-up sends a verification
        mail (required by default in hasura-auth), every password reset a reset mail, and
        with no server each one fails with a 500. Checked with the secrets, so a
        production build lists everything it lacks at once."""
        service = stack.service("auth")
        if config.is_local or service is None:
            return []
        if "AUTH_SMTP_HOST" in service.environment:
            return _login_problems(config)
        return [
            Problem(
                "error",
                f"Auth has no mail server in {config.env}: sign-up verification and "
                "password-reset mails would all fail",
                "set MAIL_ENABLED=true and MAIL_PROVIDER (sendgrid, ses, postmark, smtp, ...) "
                f"with MAIL_SMTP_USER and MAIL_SMTP_PASSWORD in {secrets_file(config.env)}, "
                "or AUTH_SMTP_HOST",
            )
        ]

    @hookimpl
    def harden(self, config: Config) -> list[Finding]:
        """``auth-policy``: password length and breach check, MFA, verified emails, concealed
        errors and token lifetimes."""
        if not self.enabled(config):
            return []
        from .hardening import findings

        return findings(config)


plugin = AuthPlugin(
    Service(
        "auth",
        IMAGE,
        title="Auth",
        port=4000,
        environment={
            "AUTH_HOST": "0.0.0.0",
            "AUTH_PORT": "4000",
            "AUTH_SERVER_URL": "${AUTH_SERVER_URL}",
            "AUTH_CLIENT_URL": "${AUTH_CLIENT_URL}",
            "HASURA_GRAPHQL_DATABASE_URL": "${DATABASE_URL}",
            "HASURA_GRAPHQL_GRAPHQL_URL": "${HASURA_GRAPHQL_URL}",
            "HASURA_GRAPHQL_ADMIN_SECRET": "${HASURA_GRAPHQL_ADMIN_SECRET}",
            "HASURA_GRAPHQL_JWT_SECRET": "${HASURA_GRAPHQL_JWT_SECRET}",
            "AUTH_LOG_LEVEL": "info",
        },
        healthcheck=HealthCheck(
            ("CMD", "wget", "-q", "--spider", "http://localhost:4000/healthz"),
            retries=10,
            start_period="30s",
        ),
        depends_on=("postgres", "hasura"),
        health_url="http://auth:4000/healthz",
        contract=AUTH,
    ),
    switch=Setting("AUTH_ENABLED", "true", "Run the Auth service."),
    image=Setting("AUTH_IMAGE", description="Auth image."),
    routes=(
        Subdomain("AUTH_SUBDOMAIN", "auth", "Public subdomain of the Auth API.", rate_zone="auth"),
    ),
    settings=(
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
        *POLICY_SETTINGS,
    ),
    env=_env,
    adapt=_adapt,
    checks=_checks,
    off="AUTH_ENABLED=false: the stack has no authentication",
)
