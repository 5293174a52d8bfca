"""SMTP settings of common mail providers, chosen with MAIL_PROVIDER.

``secure`` means TLS from the first byte (port 465); otherwise the connection is
upgraded with STARTTLS. ``{region}`` is filled from MAIL_REGION.
"""

from __future__ import annotations

from typing import NamedTuple


class Preset(NamedTuple):
    title: str
    host: str
    port: int
    secure: bool
    user: str = ""  # a fixed user name, where the provider has one
    region: str = ""  # the default of MAIL_REGION, where the host has one


PRESETS: dict[str, Preset] = {
    "sendgrid": Preset("SendGrid", "smtp.sendgrid.net", 587, False, user="apikey"),
    "mailgun": Preset("Mailgun (US)", "smtp.mailgun.org", 587, False),
    "mailgun-eu": Preset("Mailgun (EU)", "smtp.eu.mailgun.org", 587, False),
    "ses": Preset(
        "Amazon SES", "email-smtp.{region}.amazonaws.com", 587, False, region="us-east-1"
    ),
    "postmark": Preset("Postmark", "smtp.postmarkapp.com", 587, False),
    "resend": Preset("Resend", "smtp.resend.com", 465, True, user="resend"),
    "brevo": Preset("Brevo (Sendinblue)", "smtp-relay.brevo.com", 587, False),
    "mailjet": Preset("Mailjet", "in-v3.mailjet.com", 587, False),
    "sparkpost": Preset("SparkPost", "smtp.sparkpostmail.com", 587, False, user="SMTP_Injection"),
    "sparkpost-eu": Preset(
        "SparkPost (EU)", "smtp.eu.sparkpostmail.com", 587, False, user="SMTP_Injection"
    ),
    "gmail": Preset("Gmail / Google Workspace", "smtp.gmail.com", 587, False),
    "office365": Preset("Microsoft 365", "smtp.office365.com", 587, False),
    "outlook": Preset("Outlook.com", "smtp-mail.outlook.com", 587, False),
    "zoho": Preset("Zoho Mail", "smtp.zoho.com", 465, True),
    "fastmail": Preset("Fastmail", "smtp.fastmail.com", 465, True),
    "smtp2go": Preset("SMTP2GO", "mail.smtp2go.com", 587, False),
    "elasticemail": Preset("Elastic Email", "smtp.elasticemail.com", 587, False),
    "mandrill": Preset("Mandrill (Mailchimp)", "smtp.mandrillapp.com", 587, False),
    "mailersend": Preset("MailerSend", "smtp.mailersend.net", 587, False),
    "mailtrap": Preset("Mailtrap (sending)", "live.smtp.mailtrap.io", 587, False),
    "sendpulse": Preset("SendPulse", "smtp-pulse.com", 465, True),
    "socketlabs": Preset("SocketLabs", "smtp.socketlabs.com", 587, False),
    "icloud": Preset("iCloud Mail", "smtp.mail.me.com", 587, False),
    "yandex": Preset("Yandex Mail", "smtp.yandex.com", 465, True),
    "protonmail": Preset("Proton Mail (SMTP token)", "smtp.protonmail.ch", 587, False),
    # Proton Mail Bridge runs as a container of its own (e.g. a CS_N slot) on the network.
    "protonmail-bridge": Preset("Proton Mail Bridge", "protonmail-bridge", 1025, False),
}

ALIASES = {
    "amazon-ses": "ses",
    "aws-ses": "ses",
    "sendinblue": "brevo",
    "google": "gmail",
    "microsoft365": "office365",
    "m365": "office365",
    "elastic-email": "elasticemail",
    "mailchimp": "mandrill",
    "proton": "protonmail",
    "proton-bridge": "protonmail-bridge",
}

# Not a provider: the local catcher (dev default) and a hand-configured server.
CATCHER = "mailpit"
GENERIC = "smtp"
GENERIC_ALIASES = {"smtp", "generic", "custom"}
CATCHER_ALIASES = {"mailpit", "dev", "local", "catcher"}


def canonical(name: str) -> str:
    low = name.strip().lower().replace("_", "-").replace(" ", "-")
    if low in CATCHER_ALIASES:
        return CATCHER
    if low in GENERIC_ALIASES:
        return GENERIC
    return ALIASES.get(low, low)


def names() -> list[str]:
    return sorted([*PRESETS, CATCHER, GENERIC])
