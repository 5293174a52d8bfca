"""Auth's part of the hardening suite: the account policy hasura-auth is started with."""

from __future__ import annotations

from nself_sdk import Config, Finding

from . import not_in_dev

# NIST SP 800-63B 5.1.1.2: memorized secrets of at least 8 characters.
MIN_PASSWORD = 8
MAX_ACCESS_TOKEN = 3600


def findings(config: Config) -> list[Finding]:
    strict = not config.is_local
    found = []

    def add(level: str, message: str, hint: str) -> None:
        found.append(
            Finding(
                "auth-policy",
                "error" if level == "error" and strict else "warning",
                message,
                hint,
                layer="authentication",
            )
        )

    length = config.int("AUTH_PASSWORD_MIN_LENGTH", 12)
    if length < MIN_PASSWORD:
        add(
            "error",
            f"{config.where('AUTH_PASSWORD_MIN_LENGTH')}: passwords of {length} characters are "
            f"accepted (NIST SP 800-63B asks for {MIN_PASSWORD} or more)",
            "AUTH_PASSWORD_MIN_LENGTH=12, or delete the line for nself's default (12)",
        )
    if strict:
        if not not_in_dev(config, "AUTH_PASSWORD_HIBP_ENABLED"):
            add(
                "warning",
                f"{config.where('AUTH_PASSWORD_HIBP_ENABLED')}: passwords known from breaches "
                "are accepted",
                "delete AUTH_PASSWORD_HIBP_ENABLED=false (on by default outside dev)",
            )
        if not config.flag("AUTH_MFA_ENABLED", True):
            add(
                "warning",
                f"{config.where('AUTH_MFA_ENABLED')}: users cannot add a second factor",
                "AUTH_MFA_ENABLED=true (TOTP; users opt in)",
            )
        if not config.flag("AUTH_EMAIL_SIGNIN_EMAIL_VERIFIED_REQUIRED", True):
            add(
                "warning",
                "users sign in with email addresses nobody verified",
                "delete AUTH_EMAIL_SIGNIN_EMAIL_VERIFIED_REQUIRED=false",
            )
        if not not_in_dev(config, "AUTH_CONCEAL_ERRORS"):
            add(
                "warning",
                "sign-in errors tell whether an account exists (account enumeration)",
                "delete AUTH_CONCEAL_ERRORS=false (on by default outside dev)",
            )
    lifetime = config.int("AUTH_ACCESS_TOKEN_EXPIRES_IN", 900)
    if lifetime > MAX_ACCESS_TOKEN:
        add(
            "warning",
            f"{config.where('AUTH_ACCESS_TOKEN_EXPIRES_IN')}: access tokens live {lifetime} s: a "
            "stolen token or a revoked user keeps access that long",
            "AUTH_ACCESS_TOKEN_EXPIRES_IN=900 (clients refresh them)",
        )
    if not found:
        mfa = "MFA offered" if config.flag("AUTH_MFA_ENABLED", True) else "no MFA"
        breach = (
            "breached passwords refused"
            if not_in_dev(config, "AUTH_PASSWORD_HIBP_ENABLED")
            else "no breach check (dev)"
        )
        found.append(
            Finding(
                "auth-policy",
                "ok",
                f"passwords of {length}+ characters, {breach}, {mfa}, {lifetime} s access tokens",
                layer="authentication",
            )
        )
    return found
