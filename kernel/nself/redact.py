"""Keeping secrets out of output. A setting is secret when a plugin declares it so or its
name looks like one (``..._PASSWORD``, ``..._TOKEN``...): the kernel needs the rule itself,
to remember secret values as it reads the env files, before any plugin has answered. All
output is scrubbed of every value remembered and of credentials in URLs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "<redacted>"
# A name holding one of these anywhere marks a secret (PGPASSWORD, GITHUB_TOKEN...).
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "APIKEY", "PRIVATEKEY")
# ... or one of these as a whole "_"-separated part, or a part ending in KEY (MASTERKEY).
SECRET_PARTS = frozenset({"PASS", "PWD", "KEY", "KEYS", "SALT", "PRIVATE"})
# A name ending in one of these describes a secret rather than holding one
# (JWT_KEY_FILE, S3_ACCESS_KEY_ID, SECRET_NAME, ..._TOKEN_URL, ..._PASSWORD_MIN_LENGTH).
NOT_SECRET_LAST = frozenset(
    {"URL", "URI", "HOST", "PORT", "PATH", "FILE", "DIR", "ID", "NAME", "TYPE", "ENABLED"}
    | {"LENGTH", "TTL", "TIMEOUT"}
)
# Shorter values are too likely to be ordinary words to scrub everywhere.
MIN_SCRUB = 8
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'\"]*:)([^@\s/'\"]+)(@)")
_known: list[str] = []


def secret_name(name: str) -> bool:
    """Whether ``name`` looks like it holds a secret."""
    parts = name.upper().split("_")
    if parts[-1] in NOT_SECRET_LAST:
        return False
    return any(word in name.upper() for word in SECRET_WORDS) or any(
        part in SECRET_PARTS or part.endswith("KEY") for part in parts
    )


def url_password(value: str) -> str | None:
    """The password of the first ``scheme://user:password@host`` in ``value``, if any."""
    match = _URL_CREDENTIALS.search(value)
    return match.group(2) if match else None


def mask_url_credentials(value: str) -> str:
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", value)


def remember(values: Iterable[str]) -> None:
    """Remember secret values (and their URL-encoded forms), longest first: a value
    holding another is masked whole."""
    from urllib.parse import quote

    known = set(_known)
    known.update(form for value in values for form in (value, quote(value, safe="")))
    _known[:] = sorted((v for v in known if len(v) >= MIN_SCRUB), key=lambda v: (-len(v), v))


def scrub(text: str) -> str:
    """``text`` with remembered secret values and URL passwords masked."""
    for value in _known:
        if value in text:
            text = text.replace(value, MASK)
    return mask_url_credentials(text) if "://" in text else text


def scrub_data(data: Any) -> Any:
    """``scrub`` applied to every string inside JSON-like ``data``."""
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, dict):
        return {scrub_data(k): scrub_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [scrub_data(v) for v in data]
    return data
