"""Layered env files: parsing, precedence and ``${VAR}`` / ``${VAR:-default}`` interpolation."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, UsageError
from .model import Shown

ENVIRONMENTS = ("dev", "staging", "prod")
ALIASES = {"local": "dev", "development": "dev", "production": "prod", "stage": "staging"}
COMPUTED = ".env.computed"
SECRETS = ".env.secrets"
# The env files a project keeps (and .env.computed, which only the kernel writes).
RESERVED = frozenset({".env.dev", ".env.local", ".env.staging", ".env.prod", SECRETS, COMPUTED})


def canonical_env(name: str, where: str = "") -> str:
    """Map ``local``/``production``... to dev/staging/prod, or fail naming the source."""
    value = ALIASES.get(name.strip().lower(), name.strip().lower())
    if value not in ENVIRONMENTS:
        at = f" ({where})" if where else ""
        raise ConfigError(
            f"unknown environment {name!r}{at}",
            "use one of: local (dev), staging, prod",
        )
    return value


def layer_files(env: str) -> list[str]:
    """The env files read for ``env``, lowest precedence first.

    ``.env.local`` is a developer's own override, so it applies to the local target only:
    nothing on a laptop can leak into a staging or production build.
    """
    files = [".env.dev"]
    if env == "dev":
        files.append(".env.local")
    else:
        files.append(f".env.{env}")
    files.append(SECRETS)
    return files


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


# One binding: optional `export`, a name, `=`, then a value that is single-quoted
# (literal), double-quoted (escapes, interpolation) or bare (up to a ` #` comment). Quoted
# values may span lines. The same syntax python-dotenv and Docker Compose read.
_BINDING = re.compile(
    r"""[ \t]*(?:export[ \t]+)?(?P<key>[^=\s#'"]+)[ \t]*
    (?:=[ \t]*(?:
        '(?P<single>(?:\\'|[^'])*)'
        |"(?P<double>(?:\\.|[^"\\])*)"
        |(?P<bare>(?!['"])[^\r\n]*)
    ))?
    (?P<rest>[^\r\n]*)(?:\r?\n|\Z)""",
    re.VERBOSE,
)
_SKIP = re.compile(r"[ \t]*(?:#[^\r\n]*)?(?:\r?\n|\Z)")
_TRAILER = re.compile(r"[ \t]*(?:#.*)?")
_COMMENT = re.compile(r"\s+#.*")
_SINGLE_ESCAPES = re.compile(r"\\([\\'])")
_DOUBLE_ESCAPES = re.compile(r"\\([\\'\"abfnrtv$])")
_ESCAPED = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_VARIABLE = re.compile(r"\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}")


def parse_text(text: str, file: str) -> list[Entry]:
    """Parse one env file; a malformed line is an error naming file and line."""
    entries: list[Entry] = []
    pos, line, size = 0, 1, len(text)
    while pos < size:
        skipped = _SKIP.match(text, pos)
        if skipped and skipped.end() > pos:
            line += 1
            pos = skipped.end()
            continue
        match = _BINDING.match(text, pos)
        start_line = line
        if match is None or match.end() == pos:
            raise _unparsable(file, start_line, text[pos:].split("\n", 1)[0])
        key = match.group("key")
        if not _TRAILER.fullmatch(match.group("rest")):
            raise _unparsable(file, start_line, match.group(0))
        literal = match.group("single") is not None
        if literal:
            value = _SINGLE_ESCAPES.sub(r"\1", match.group("single"))
        elif match.group("double") is not None:
            value = _DOUBLE_ESCAPES.sub(_unescape, match.group("double"))
        elif match.group("bare") is not None:
            value = _COMMENT.sub("", match.group("bare")).strip()
        else:
            raise ConfigError(
                f"{file}:{start_line}: {key[:40]!r} has no '=' and no value",
                f"write {key[:40]}=value (or {key[:40]}= for empty)",
            )
        if not _valid_key(key):
            raise ConfigError(
                f"{file}:{start_line}: invalid variable name {key!r}",
                "names use letters, digits and underscores and do not start with a digit",
            )
        entries.append(Entry(key, value, file, start_line, literal=literal))
        line += match.group(0).count("\n")
        pos = match.end()
    return entries


def _unescape(match: re.Match[str]) -> str:
    char = match.group(1)
    return _ESCAPED.get(char, char)


def _unparsable(file: str, line: int, text: str) -> ConfigError:
    # Show the name only: the value may be a secret.
    text = text.strip()
    shown = f" ({text.split('=', 1)[0][:40]!r}...)" if "=" in text else ""
    return ConfigError(
        f"{file}:{line}: cannot parse the line{shown}",
        "lines look like KEY=value; quote values with spaces or '#'",
    )


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


def read_layers(project: Path, env: str) -> list[Entry]:
    """All entries of the env's layers, in precedence order (later wins)."""
    entries: list[Entry] = []
    for name in layer_files(env):
        path = project / name
        if not path.is_file():
            continue
        if name == SECRETS:
            check_private(path)
        entries.extend(parse_text(path.read_text(encoding="utf-8"), name))
    return entries


class Resolver:
    """Resolves ``${VAR}`` references lazily over merged layers, detecting cycles."""

    def __init__(self, layers: Iterable[Entry]) -> None:
        self.history: dict[str, list[Entry]] = {}
        for entry in layers:
            self.history.setdefault(entry.key, []).append(entry)
        self._cache: dict[str, str] = {}

    def add(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.history.setdefault(entry.key, []).append(entry)
        self._cache.clear()

    def __contains__(self, key: str) -> bool:
        return key in self.history

    def entry(self, key: str) -> Entry | None:
        chain = self.history.get(key)
        return chain[-1] if chain else None

    def get(self, key: str) -> str | None:
        if key not in self.history:
            return None
        return self._resolve(key, ())

    def _resolve(self, key: str, stack: tuple[str, ...]) -> str:
        if key in self._cache:
            return self._cache[key]
        entry = self.history[key][-1]
        if key in stack:
            cycle = " -> ".join((*stack, key))
            raise ConfigError(f"{entry.where}: circular reference {cycle}", "break the cycle")
        value = entry.raw if entry.literal else self._expand(entry, (*stack, key))
        self._cache[key] = value
        return value

    def _expand(self, entry: Entry, stack: tuple[str, ...]) -> str:
        if "${" not in entry.raw:
            return entry.raw
        out: list[str] = []
        pos = 0
        for match in _VARIABLE.finditer(entry.raw):
            out.append(entry.raw[pos : match.start()])
            pos = match.end()
            name, default = match.group("name"), match.group("default")
            if name in self.history:
                out.append(self._resolve(name, stack))
            elif default is not None:
                out.append(default)
            else:
                raise ConfigError(
                    f"{entry.where}: {entry.key} refers to undefined variable ${{{name}}}",
                    f"define {name} or write ${{{name}:-default}}",
                )
        out.append(entry.raw[pos:])
        return "".join(out)

    def resolve_all(self) -> dict[str, str]:
        return {key: self._resolve(key, ()) for key in sorted(self.history)}


def render_env(values: dict[str, str], header: str) -> str:
    """Serialise values so that Compose and our parser read them back unchanged."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for key in sorted(values):
        lines.append(f"{key}={quote(values[key])}")
    return "\n".join(lines) + "\n"


def quote(value: str) -> str:
    """Single-quote anything that is not a plain word; single quotes keep JSON intact."""
    if value and all(c.isalnum() or c in "-_./:@+,=" for c in value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    # Double quotes: escape what Compose would otherwise interpret (``$`` starts a variable).
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("$", "\\$")
    )
    return f'"{escaped}"'


def current_env_file(project: Path) -> Path:
    return project / ".nself" / "env"


def target_env(project: Path, requested: str | None = None) -> str:
    """``--env`` beats ``NSELF_ENV`` beats the last ``nself env switch`` beats dev."""
    if requested:
        try:
            return canonical_env(requested, "--env")
        except ConfigError as exc:
            raise UsageError(exc.message, exc.hint) from None
    from_process = os.environ.get("NSELF_ENV")
    if from_process:
        return canonical_env(from_process, "NSELF_ENV")
    marker = current_env_file(project)
    if marker.is_file():
        return canonical_env(
            marker.read_text(encoding="utf-8").strip(), str(marker.relative_to(project))
        )
    return "dev"
