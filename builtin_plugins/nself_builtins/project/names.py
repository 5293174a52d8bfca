"""The project's name and base domain: one rule each for ``nself init`` and the env files."""

from __future__ import annotations

import re
from pathlib import Path

from nself_sdk import Config, Problem, UsageError

NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
DEFAULT_DOMAIN = "local.nself.org"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise UsageError(
            f"invalid project name {name!r}",
            "use lowercase letters, digits and '-', starting with a letter",
        )
    return name


def folder_name(folder: Path) -> str:
    """The project name the folder's name gives, checked (hinting --name when it fails)."""
    name = slug(folder.resolve().name) or "app"
    if not NAME.match(name):
        raise UsageError(
            f"invalid project name {name!r} (from the folder's name)",
            "pass --name NAME: lowercase letters, digits and '-', starting with a letter",
        )
    return name


def domain_rule(domain: str) -> tuple[str, str] | None:
    """Why ``domain`` cannot be BASE_DOMAIN, and a hint; None if it can. The one rule for
    ``init --domain`` and BASE_DOMAIN in an env file."""
    label = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    example = f"use a DNS name such as example.com (the default is {DEFAULT_DOMAIN})"
    if domain != domain.lower():
        return "has capital letters", f"write it in lowercase: {domain.lower()}"
    if re.fullmatch(r"[0-9.]+|.*:.*", domain):
        return "is an IP address: URLs are subdomains of it (api.DOMAIN)", example
    if "." not in domain:
        return "is one label: subdomains of it need a DNS name with a '.'", example
    if len(domain) > 253 or not re.fullmatch(rf"{label}(\.{label})+", domain):
        return "is not a DNS name", example
    return None


def check_domain(domain: str) -> str:
    if (problem := domain_rule(domain)) is not None:
        raise UsageError(f"invalid domain {domain!r}: {problem[0]}", problem[1])
    return domain


def domain_problem(config: Config, name: str) -> Problem | None:
    """An error when setting ``name`` is set but cannot be a base domain (the rule ``nself
    init --domain`` applies), at the line that sets it."""
    value = config.text(name)
    if not value or (problem := domain_rule(value)) is None:
        return None
    why, hint = problem
    return Problem(
        "error", f"{config.where(name)}: {name}={value!r} is not a domain name: {why}", hint
    )
