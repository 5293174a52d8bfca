"""Checks for setting values that end up in the nginx configuration or docker-compose.yml.

A subdomain or a domain becomes a ``server_name`` and a certificate name, a size a
``client_max_body_size``, an image a ``image:`` line: a value with ``;``, ``{``, a space or
a quote would change what the configuration says. Every plugin that reads such a setting
checks it in ``validate_config`` (each check is an error at the setting's line)::

    from nself_sdk.checks import label_problem

    @hookimpl
    def validate_config(config):
        problem = label_problem(config, "MYAPP_SUBDOMAIN")
        return [problem] if problem else []

A subdomain is one DNS label (``api``, not ``api.v2``): the certificates nself makes and
the usual wildcard certificates cover ``*.BASE_DOMAIN``, one level deep.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from nself.model import Problem

from .config import Config

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SIZE = re.compile(r"^(\d+)([kKmMgG]?)$")
# nginx reads a size into an off_t: larger values fail `nginx -t` ("invalid value").
MAX_SIZE_BYTES = 2**63 - 1
SIZE_SCALE = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
LABEL_HINT = (
    "use one DNS label (one level below BASE_DOMAIN, no '.'): 1-63 lowercase letters, "
    "digits and '-', not starting or ending with '-' (e.g. api)"
)


def is_label(value: str) -> bool:
    return bool(LABEL.match(value))


def is_domain(value: str) -> bool:
    return len(value) <= 253 and all(LABEL.match(part) for part in value.split("."))


def is_size(value: str) -> bool:
    """An nginx size (``100m``, ``5g``, ``0``) that nginx can hold (at most 2^63-1 bytes)."""
    match = SIZE.match(value)
    if not match:
        return False
    number, unit = match.groups()
    return len(number) <= 20 and int(number) <= MAX_SIZE_BYTES // SIZE_SCALE[unit.lower()]


def _checked(
    config: Config, name: str, valid: Callable[[str], bool], what: str, hint: str
) -> Problem | None:
    """An error at the setting's line when it is set (empty is not checked) but not valid."""
    value = config.text(name)
    if not value or valid(value):
        return None
    return Problem("error", f"{config.where(name)}: {name}={value!r} is not {what}", hint)


def label_problem(config: Config, name: str) -> Problem | None:
    """An error when setting ``name`` is set but is not one DNS label (empty is not checked)."""
    return _checked(config, name, is_label, "a DNS label", LABEL_HINT)


def size_problem(config: Config, name: str) -> Problem | None:
    """An error when setting ``name`` is set but is not an nginx size (``100m``, ``5g``)."""
    return _checked(
        config,
        name,
        is_size,
        "a size",
        "write a number with an optional unit k, m or g (e.g. 100m), "
        f"at most {MAX_SIZE_BYTES // SIZE_SCALE['g']}g (the largest size nginx accepts)",
    )


def cidrs(value: str) -> list[str]:
    """A list of addresses or networks as written (comma or space separated)."""
    return value.replace(",", " ").split()


def is_cidr_list(value: str) -> bool:
    """Every item an IPv4/IPv6 address or network (``203.0.113.7``, ``10.8.0.0/16``)."""
    import ipaddress

    try:
        for item in cidrs(value):
            ipaddress.ip_network(item, strict=False)
    except ValueError:
        return False
    return True


def cidrs_problem(config: Config, name: str) -> Problem | None:
    """An error when setting ``name`` is set but is not a list of addresses or networks."""
    return _checked(
        config,
        name,
        is_cidr_list,
        "a list of addresses or networks",
        "write addresses or CIDR networks separated by commas (e.g. 203.0.113.7,10.8.0.0/16)",
    )


# A Docker image reference (distribution/reference): [host[:port]/]path[:tag][@digest].
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE = re.compile(
    rf"^(?:{_HOST}/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


def is_image(value: str) -> bool:
    """A well-formed image reference (``nginx:1.25-alpine``, ``ghcr.io/o/app@sha256:...``)."""
    return len(value) <= 255 and bool(IMAGE.match(value))


def image_problem(config: Config, name: str) -> Problem | None:
    """An error when setting ``name`` is set but is not an image reference Docker can pull."""
    return _checked(
        config,
        name,
        is_image,
        "an image reference",
        "write [registry/]name[:tag][@digest] without spaces, the name in lowercase "
        "(e.g. nginx:1.25-alpine or ghcr.io/owner/app:1.0)",
    )
