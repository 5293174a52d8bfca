"""Mail: a catcher for local development, or one of many SMTP providers for real delivery.

MAIL_PROVIDER picks the mode. ``mailpit`` (the dev default) runs a Mailpit container,
host ``mail``: SMTP on 1025 and a web UI on 8025 at mail.{domain}, behind a login.
A provider name (sendgrid, ses, postmark, ...) fills the SMTP host, port and TLS mode;
no container runs and mail goes straight to the provider. Either way Auth's
``AUTH_SMTP_*`` settings are derived from the mail settings (an env file still wins).
"""

from __future__ import annotations

from nself_sdk import (
    Config,
    HealthCheck,
    ImageContract,
    Mount,
    Problem,
    Service,
    ServicePlugin,
    Setting,
    Subdomain,
)
from nself_sdk.envfiles import secrets_file

from .presets import CATCHER, GENERIC, PRESETS, canonical, names

IMAGE = "axllent/mailpit:v1.21.8"
SMTP_PORT = 1025
UI_PORT = 8025
MAILPIT = ImageContract(
    image=IMAGE,
    source=(
        "https://github.com/axllent/mailpit/blob/v1.21.8/Dockerfile",
        "https://github.com/axllent/mailpit/blob/v1.21.8/.github/workflows/build-docker.yml",
        "https://mailpit.axllent.org/docs/configuration/runtime-options/",
    ),
    # alpine with /mailpit (ENTRYPOINT) and tzdata, no USER.
    user=0,
    capabilities=(),
    # MP_DATABASE=/data/mailpit.db
    writable=("/data",),
    tools=("/mailpit", "sh", "wget"),
    env=("MP_*", "TZ"),
    # EXPOSE 1025 (SMTP) 1110 (POP3) 8025 (web UI and API, /readyz).
    ports=(SMTP_PORT, 1110, UI_PORT),
    platforms=("linux/386", "linux/amd64", "linux/arm64"),
    notes="SMTP AUTH is refused unless MP_SMTP_AUTH_ACCEPT_ANY (or an auth file) is set; "
    "over plain SMTP also MP_SMTP_AUTH_ALLOW_INSECURE.",
)
# hasura-auth's mailer always logs in (PLAIN by default, LOGIN alike) and refuses to over
# a connection without TLS unless the host is one of "mailhog", "localhost", "127.0.0.1",
# "::1" (nhost/hasura-auth go/notifications/stdlib.go): Auth reaches the catcher by the
# one of those names a container can have.
AUTH_HOST = "mailhog"


def provider(config: Config) -> str:
    """The chosen provider; empty outside dev when none is set."""
    raw = config.text("MAIL_PROVIDER")
    if not raw:
        return CATCHER if config.is_local else ""
    return canonical(raw)


SETTINGS = (
    Setting(
        "MAIL_PROVIDER",
        None,
        "mailpit (local catcher, dev default), smtp (set MAIL_SMTP_HOST) or a provider: "
        + ", ".join(sorted(PRESETS)),
    ),
    Setting("MAIL_SMTP_HOST", "", "SMTP server; empty: the provider's."),
    Setting("MAIL_SMTP_PORT", "", "SMTP port; empty: the provider's."),
    Setting("MAIL_SMTP_SECURE", "", "TLS from the start (465) instead of STARTTLS."),
    Setting("MAIL_SMTP_USER", "", "SMTP user name; empty: the provider's fixed one."),
    Setting("MAIL_SMTP_PASSWORD", "", "SMTP password or API key.", secret=True),
    Setting("MAIL_FROM", "noreply@${BASE_DOMAIN}", "Sender address."),
    Setting("MAIL_REGION", "", "Provider region where the host has one (ses)."),
)


def smtp(config: Config) -> dict[str, str]:
    """The effective SMTP settings: explicit MAIL_SMTP_* over the provider's preset."""
    chosen = provider(config)
    if chosen == CATCHER:
        host, port, secure, user = "mail", SMTP_PORT, False, ""
    elif chosen in PRESETS:
        preset = PRESETS[chosen]
        region = config.text("MAIL_REGION", preset.region)
        host, port, secure, user = (
            preset.host.format(region=region),
            preset.port,
            preset.secure,
            preset.user,
        )
    else:
        host, port, secure, user = "", 587, False, ""
    secure_raw = config.text("MAIL_SMTP_SECURE")
    return {
        "host": config.text("MAIL_SMTP_HOST") or host,
        "port": str(config.int("MAIL_SMTP_PORT", port)),
        "secure": str(config.flag("MAIL_SMTP_SECURE", secure) if secure_raw else secure).lower(),
        "user": config.text("MAIL_SMTP_USER") or user,
        "password": "" if chosen == CATCHER else config.text("MAIL_SMTP_PASSWORD"),
    }


def _checks(config: Config) -> list[Problem]:
    raw = config.text("MAIL_PROVIDER")
    chosen = provider(config)
    where = config.where("MAIL_PROVIDER")
    if not chosen:
        return [
            Problem(
                "error",
                f"MAIL_ENABLED=true but MAIL_PROVIDER is not set for {config.env}",
                "set MAIL_PROVIDER in .env." + config.env + " (e.g. sendgrid, ses, postmark, "
                "smtp) or MAIL_PROVIDER=mailpit to only catch mail",
            )
        ]
    if chosen not in PRESETS and chosen not in (CATCHER, GENERIC):
        return [
            Problem(
                "error",
                f"{where}: unknown MAIL_PROVIDER {raw!r}",
                "use one of: " + ", ".join(names()),
            )
        ]
    problems: list[Problem] = []
    settings = smtp(config)
    if chosen == GENERIC and not config.text("MAIL_SMTP_HOST"):
        problems.append(
            Problem(
                "error",
                f"{where}: MAIL_PROVIDER=smtp needs MAIL_SMTP_HOST",
                "set MAIL_SMTP_HOST (and MAIL_SMTP_PORT, MAIL_SMTP_USER, MAIL_SMTP_PASSWORD)",
            )
        )
    port = int(settings["port"])
    if not 0 < port < 65536:
        problems.append(Problem("error", f"{config.where('MAIL_SMTP_PORT')}: bad SMTP port"))
    if chosen != CATCHER and settings["user"] and not settings["password"]:
        problems.append(
            Problem(
                "error",
                f"MAIL_PROVIDER={chosen} needs MAIL_SMTP_PASSWORD (the SMTP password or API key)",
                f"set MAIL_SMTP_PASSWORD in {secrets_file(config.env)}",
            )
        )
    if chosen not in (CATCHER, GENERIC) and not settings["user"]:
        problems.append(
            Problem(
                "error",
                f"MAIL_PROVIDER={chosen} needs MAIL_SMTP_USER",
                f"set MAIL_SMTP_USER (and MAIL_SMTP_PASSWORD in {secrets_file(config.env)})",
            )
        )
    if not config.is_local:
        source = config.where("MAIL_SMTP_PASSWORD")
        if settings["password"] and source.startswith(".env.dev"):
            problems.append(
                Problem(
                    "error",
                    f"MAIL_SMTP_PASSWORD comes from the committed {source}",
                    f"move it to {secrets_file(config.env)}",
                )
            )
        if chosen == CATCHER:
            problems.append(
                Problem(
                    "warning",
                    f"MAIL_PROVIDER=mailpit in {config.env}: mail is caught, never delivered",
                )
            )
    return problems


def _env(config: Config) -> dict[str, str]:
    if not provider(config):
        return {}
    settings = smtp(config)
    sender = config.text("MAIL_FROM") or f"noreply@{config.domain}"
    return {
        "MAIL_SMTP_HOST": settings["host"],
        "MAIL_SMTP_PORT": settings["port"],
        "MAIL_SMTP_SECURE": settings["secure"],
        "MAIL_SMTP_USER": settings["user"],
        "AUTH_SMTP_HOST": AUTH_HOST if provider(config) == CATCHER else settings["host"],
        "AUTH_SMTP_PORT": settings["port"],
        "AUTH_SMTP_SECURE": settings["secure"],
        "AUTH_SMTP_USER": settings["user"],
        "AUTH_SMTP_PASS": settings["password"],
        "AUTH_SMTP_SENDER": sender,
    }


plugin = ServicePlugin(
    Service(
        "mail",
        IMAGE,
        title="Mail (Mailpit)",
        role="optional",
        port=UI_PORT,
        environment={
            "MP_SMTP_BIND_ADDR": f"0.0.0.0:{SMTP_PORT}",
            "MP_UI_BIND_ADDR": f"0.0.0.0:{UI_PORT}",
            "MP_DATABASE": "/data/mailpit.db",
            "MP_MAX_MESSAGES": "5000",
            # Mailpit answers AUTH with "502 Command not implemented" unless told to accept
            # any login, and refuses that without TLS unless it may be insecure
            # (axllent/mailpit config/config.go, internal/smtpd): Auth always logs in. A
            # catcher on the private network.
            "MP_SMTP_AUTH_ACCEPT_ANY": "1",
            "MP_SMTP_AUTH_ALLOW_INSECURE": "1",
        },
        healthcheck=HealthCheck(("CMD", "/mailpit", "readyz"), retries=10, start_period="5s"),
        mounts=(Mount("mail_data", "/data"),),
        aliases=(AUTH_HOST,),
        health_url=f"http://mail:{UI_PORT}/readyz",
        contract=MAILPIT,
    ),
    switch=Setting("MAIL_ENABLED", "false", "Send mail: a local catcher or an SMTP provider."),
    image=Setting("MAIL_IMAGE", description="Image of the local mail catcher (Mailpit)."),
    routes=(
        Subdomain(
            "MAIL_SUBDOMAIN",
            "mail",
            "Subdomain of the catcher's web UI (behind nginx's login).",
            websocket=True,
            internal_only=True,
        ),
    ),
    settings=SETTINGS,
    env=_env,
    checks=_checks,
    # Only the catcher is a container; a provider is reached over the internet.
    runs=lambda config: provider(config) == CATCHER,
)
