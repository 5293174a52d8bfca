"""Layered env files: which files a target reads, their syntax (python-dotenv's, which is
Compose's) and interpolation. Errors name the file and line, never the value."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .model import Shown

ENVIRONMENTS = ("dev", "staging", "prod")
ALIASES = {"local": "dev", "development": "dev", "production": "prod", "stage": "staging"}
COMPUTED = ".env.computed"  # the resolved values, written by nself_sdk.plan
SECRETS = ".env.secrets"
SECRETS_FILES = (SECRETS, f"{SECRETS}.staging", f"{SECRETS}.prod")
# The env files a project keeps (and .env.computed, which only nself writes).
RESERVED = frozenset(
    {".env.dev", ".env.local", ".env.staging", ".env.prod", *SECRETS_FILES, COMPUTED}
)


def canonical_env(name: str, where: str = "") -> str:
    """Map ``local``/``production``... to dev/staging/prod, or fail naming the source."""
    value = ALIASES.get(name.strip().lower(), name.strip().lower())
    if value not in ENVIRONMENTS:
        at = f" ({where})" if where else ""
        raise ConfigError(
            f"unknown environment {name!r}{at}", "use one of: local (dev), staging, prod"
        )
    return value


def secrets_file(env: str) -> str:
    """The secrets layer of ``env``: ``.env.secrets`` (local) or ``.env.secrets.<env>``."""
    return SECRETS if env == "dev" else f"{SECRETS}.{env}"


def layer_files(env: str) -> list[str]:
    """The env files read for ``env``, lowest precedence first: a developer's own
    ``.env.local`` never reaches a server build, and each target has its own secrets."""
    return [".env.dev", ".env.local" if env == "dev" else f".env.{env}", secrets_file(env)]


@dataclass(frozen=True, repr=False)
class Entry(Shown):
    """One ``KEY=value`` line: where it came from and whether it interpolates."""

    key: str
    raw: str
    file: str
    line: int
    literal: bool = False

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


def parse_text(text: str, file: str) -> list[Entry]:
    """Parse one env file with python-dotenv (``export``, single quotes literal, double
    quotes with escapes, `` #`` comments, multi-line values). A malformed line is named by
    file and number, never shown: it may be a pasted secret."""
    from dotenv.parser import parse_stream  # python-dotenv

    if "\x00" in text:  # Compose and the shell would cut the value there
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ConfigError(
            f"{file}:{line}: the line holds a NUL byte (not shown: it may be a secret)",
            "remove the NUL byte from that line; an env file is plain text",
        )
    entries: list[Entry] = []
    for binding in parse_stream(io.StringIO(text)):
        line, source = binding.original.line, binding.original.string
        if binding.error:  # named only when the part before '=' is a name
            name = source.strip().removeprefix("export ").split("=", 1)[0].strip()
            shown = f" ({name[:40]}=...)" if "=" in source and _valid_key(name) else ""
            raise ConfigError(
                f"{file}:{line}: cannot parse the line{shown}",
                "lines look like KEY=value; quote values with spaces or '#'",
            )
        if binding.key is None:
            continue
        if binding.value is None:
            raise ConfigError(
                f"{file}:{line}: the line has no '=' (not shown: it may be a secret)",
                "lines look like KEY=value (KEY= for empty); remove or fix that line",
            )
        if not _valid_key(binding.key):
            raise ConfigError(
                f"{file}:{line}: invalid variable name before '=' (not shown: it may be a secret)",
                "names use letters, digits and underscores and do not start with a digit",
            )
        literal = source.split("=", 1)[1].lstrip().startswith("'")
        entries.append(Entry(binding.key, binding.value, file, line, literal))
    return entries


def _valid_key(key: str) -> bool:
    return bool(key) and not key[0].isdigit() and all(c.isalnum() or c == "_" for c in key)


def check_private(path: Path) -> None:
    """Refuse a secrets file that group or others can read."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path.name} is readable by group or others (mode {mode:04o})",
            f"run: chmod 600 {path.name}",
        )


def read_text(path: Path, name: str) -> str | None:
    """The text of the env file ``path`` (shown as ``name``); None when there is none. A
    folder or a dangling link there is an error: skipping it would drop settings silently."""
    if not path.exists():
        if path.is_symlink():
            raise ConfigError(
                f"{name} is a link to {os.readlink(path)}, which does not exist",
                f"point the link at an existing file, or remove {name}",
            )
        return None
    if path.is_dir():
        raise ConfigError(
            f"{name} is a folder, where nself reads an env file",
            f"move the folder out of the way (an env file named {name} may take its place)",
        )
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{name}:{line}: not valid UTF-8",
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`); "
            "the line is not shown: it may be a secret",
        ) from None


def read_layers(project: Path, env: str) -> list[Entry]:
    """All entries of the env's layers, in precedence order (later wins)."""
    entries: list[Entry] = []
    for name in layer_files(env):
        text = read_text(project / name, name)
        if text is not None:
            if name in SECRETS_FILES:
                check_private(project / name)
            entries.extend(parse_text(text, name))
    return entries


class Resolver:
    """The merged layers (``history``: every entry of a name, the last one wins), resolved
    lazily and once. ``${NAME}``, ``${NAME:-default}`` and ``${NAME-default}`` mean what
    they mean to Compose; ``$NAME`` and a lone ``$`` stay literal; other forms are errors."""

    def __init__(self, layers: Iterable[Entry]) -> None:
        self.history: dict[str, list[Entry]] = {}
        self.add(layers)

    def add(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.history.setdefault(entry.key, []).append(entry)
        self._cache: dict[str, str] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.history

    def entry(self, key: str) -> Entry | None:
        chain = self.history.get(key)
        return chain[-1] if chain else None

    def get(self, key: str) -> str | None:
        return self._resolve(key, ()) if key in self.history else None

    def resolve_all(self) -> dict[str, str]:
        return {key: self._resolve(key, ()) for key in sorted(self.history)}

    def _resolve(self, key: str, stack: tuple[str, ...]) -> str:
        if key in self._cache:
            return self._cache[key]
        entry = self.history[key][-1]
        if key in stack:
            cycle = " -> ".join((*stack, key))
            raise ConfigError(f"{entry.where}: circular reference {cycle}", "break the cycle")
        value = entry.raw
        if not entry.literal and "${" in value:
            value = self._expand(entry, 0, (*stack, key), True)[0]
        self._cache[key] = value
        return value

    def _expand(
        self, entry: Entry, pos: int, stack: tuple[str, ...], evaluate: bool, nested: bool = False
    ) -> tuple[str, int]:
        """``entry.raw`` from ``pos`` with references replaced (only checked unless
        ``evaluate``), up to the end or a default's closing ``}``; the text and its end."""
        raw = entry.raw
        out: list[str] = []
        while True:
            dollar = raw.find("${", pos)
            close = raw.find("}", pos) if nested else -1
            if close != -1 and (dollar == -1 or close < dollar):
                return "".join(out) + raw[pos:close], close
            if dollar == -1:
                if nested:
                    raise _malformed(entry, "a '${' is not closed by '}'")
                return "".join(out) + raw[pos:], len(raw)
            out.append(raw[pos:dollar])
            pos = dollar + 2
            while pos < len(raw) and raw[pos].isascii() and (raw[pos].isalnum() or raw[pos] == "_"):
                pos += 1
            name = raw[dollar + 2 : pos]
            op = raw[pos : pos + 2] if raw.startswith(":", pos) else raw[pos : pos + 1]
            if not op:
                raise _malformed(entry, "a '${' is not closed by '}'")
            if op[0] not in "}:-?+=":
                raise _malformed(entry, "a '${' is not followed by a variable name and '}'")
            if not name or name[0].isdigit():
                raise _malformed(entry, "a '${' is not followed by a variable name")
            if op not in ("}", ":-", "-"):
                raise _malformed(entry, f"${{{name}{op}...}} is a form nself does not interpolate")
            if op == "}":
                if evaluate and name not in self.history:
                    raise UndefinedReference(entry, name)
                out.append(self._resolve(name, stack) if evaluate else "")
                pos += 1
                continue
            value = self._resolve(name, stack) if evaluate and name in self.history else None
            if op == ":-" and value == "":
                value = None
            # The default, up to its own '}': resolved only when it is used.
            use = evaluate and value is None
            default, close = self._expand(entry, pos + len(op), stack, use, nested=True)
            out.append(default if value is None else value)
            pos = close + 1


def _malformed(entry: Entry, what: str) -> ConfigError:
    return ConfigError(
        f"{entry.where}: malformed value of {entry.key}: {what}",
        "write ${NAME}, ${NAME:-default} (unset or empty) or ${NAME-default} (unset); "
        "single quotes keep a value literal",
    )


class UndefinedReference(ConfigError):
    """A value refers to ``${name}`` and no layer sets ``name``."""

    def __init__(self, entry: Entry, name: str) -> None:
        super().__init__(
            f"{entry.where}: {entry.key} refers to undefined variable ${{{name}}}",
            f"define {name} or write ${{{name}:-default}}",
        )
        self.name, self.entry = name, entry
