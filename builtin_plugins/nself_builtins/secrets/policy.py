"""What a secret must be outside dev: set, not the dev stub, and strong.

``nself build`` asks through ``validate_files`` (it sees every secret the planned files
use); ``nself secrets audit`` and ``doctor`` apply the same strength rule.
"""

from __future__ import annotations

import re

from nself_sdk import Config, GeneratedFile, Problem
from nself_sdk.envfiles import secrets_file
from nself_sdk.model import plugin_setting

WEAK_WORDS = ("changeme", "password", "secret", "admin", "devstub", "dev-stub", "example", "test")
# How a plugin's default reads in `config.where` / an origin's `file` (the kernel's label).
DEFAULT_LABEL = "(default)"
_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


def weakness(value: str, min_length: int) -> str | None:
    """Why ``value`` is too weak to protect a server, or ``None``."""
    if len(value) < max(min_length, 16):
        return f"shorter than {max(min_length, 16)} characters"
    low = value.lower()
    for word in WEAK_WORDS:
        if word in low and len(set(low.replace(word, ""))) < 10:
            return f"based on the word {word!r}"
    if len(set(value)) < 8:
        return "too few distinct characters"
    return None


def referenced_settings(config: Config, files: list[GeneratedFile]) -> set[str]:
    """Names the generated files use, following ``${VAR}`` inside values too."""
    todo = [
        n
        for f in files
        if f.env_refs and isinstance(f.content, str)
        for n in _REF.findall(f.content)
    ]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        entry = config.resolver.entry(name)
        if entry is not None and not entry.literal:
            todo.extend(_REF.findall(entry.raw))
    return seen


def secret_problems(config: Config, files: list[GeneratedFile]) -> list[Problem]:
    """Every secret the stack uses must be set, real and strong (asked outside dev).

    A dev stub is a value that comes from ``.env.dev`` or a plugin's default, or that
    equals one of them. A secret composed of other settings (``{"key":"${JWT_KEY}"}``) is
    judged through the settings it refers to. Optional credentials (no ``generate``, no
    ``min_length``, e.g. an SMTP password) may stay empty.
    """
    problems = []
    fix = f"run `nself secrets generate --env {config.env}` or set it in {secrets_file(config.env)}"
    for name in sorted(referenced_settings(config, files)):
        setting = config.declared.get(name)
        if setting is None or not setting.secret:
            continue
        min_length = plugin_setting(setting).min_length
        required = bool(setting.generate or min_length)
        value = config.get(name) or ""
        entry = config.resolver.entry(name)
        source = config.where(name)
        if not value:
            if required:
                problems.append(Problem("error", f"{name} is not set for {config.env}", fix))
            continue
        if entry is not None and not entry.literal and "${" in entry.raw:
            continue  # composed of other settings, each checked on its own
        stubs = {e.raw for e in config.origins(name) if e.file in (".env.dev", DEFAULT_LABEL)}
        if setting.default is not None:
            stubs.add(setting.default)
        if source.startswith((".env.dev", DEFAULT_LABEL)) or value in stubs:
            problems.append(
                Problem("error", f"{name} ({source}) still has the dev-stub value", fix)
            )
        elif required and (why := weakness(value, min_length)) is not None:
            problems.append(Problem("error", f"{name} ({source}) is too weak: {why}", fix))
    return problems
