"""Layered env files: parsing, precedence and ``${VAR}`` / ``${VAR:-default}`` /
``${VAR-default}`` interpolation."""

from __future__ import annotations

import io
import os
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
# Each target has its own secrets: .env.secrets for local, .env.secrets.<env> otherwise, so
# generating one target's secrets never changes another's.
SECRETS_FILES = (SECRETS, f"{SECRETS}.staging", f"{SECRETS}.prod")
# The env files a project keeps (and .env.computed, which only the kernel writes).
RESERVED = frozenset(
    {".env.dev", ".env.local", ".env.staging", ".env.prod", *SECRETS_FILES, COMPUTED}
)


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


def secrets_file(env: str) -> str:
    """The secrets layer of ``env``: ``.env.secrets`` (local), ``.env.secrets.staging``,
    ``.env.secrets.prod``."""
    return SECRETS if env == "dev" else f"{SECRETS}.{env}"


def layer_files(env: str) -> list[str]:
    """The env files read for ``env``, lowest precedence first.

    ``.env.local`` is a developer's own override, so it applies to the local target only:
    nothing on a laptop can leak into a staging or production build. Each target reads its
    own secrets file, so the local database's password never changes when prod's is made.
    """
    files = [".env.dev"]
    if env == "dev":
        files.append(".env.local")
    else:
        files.append(f".env.{env}")
    files.append(secrets_file(env))
    return files


SPLIT_NOTE = (
    "# Copied from .env.secrets by nself when each target got its own secrets file: these\n"
    "# are the values {env} used until then. Rotate them to give {env} secrets of its own.\n"
)


def split_secrets(project: Path) -> list[str]:
    """Give a project from before per-target secrets its staging and prod files.

    Such a project has one ``.env.secrets`` (holding at least one value) that served every
    target, and neither ``.env.secrets.staging`` nor ``.env.secrets.prod``. Both are created
    as copies of it (0600, created exclusively), so every target resolves exactly the
    values it did before and no value is lost; ``.env.secrets`` stays the local target's.
    Returns the files created (none for a project already split, or with nothing to copy).
    """
    targets = [project / name for name in SECRETS_FILES[1:]]
    if any(p.exists() or p.is_symlink() for p in targets):
        return []
    legacy = project / SECRETS
    if legacy.is_symlink() or not legacy.is_file():
        return []
    check_private(legacy)
    text = read_text(legacy, SECRETS) or ""
    if not parse_text(text, SECRETS):
        return []
    created = []
    for path in targets:
        env = path.name.rsplit(".", 1)[1]
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:  # another nself command split it at the same moment
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(SPLIT_NOTE.format(env=env) + text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(path, 0o600)  # whatever the umask
        created.append(path.name)
    return created


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
    """Parse one env file with python-dotenv; a malformed line names file and line.

    The syntax is the one python-dotenv and Docker Compose read: ``export``, single quotes
    (literal), double quotes (escapes, interpolation), bare values up to a `` #`` comment,
    quoted values spanning lines.
    """
    from dotenv.parser import parse_stream  # python-dotenv

    if "\x00" in text:  # Compose and the shell would cut the value there
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise ConfigError(
            f"{file}:{line}: the line holds a NUL byte (not shown: it may be a secret)",
            "remove the NUL byte from that line; an env file is plain text",
        )
    entries: list[Entry] = []
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            raise _unparsable(file, line, binding.original.string)
        key = binding.key
        if key is None:
            continue
        # Never show the line itself: a line without '=' or with a strange name may well
        # be a pasted secret. File and line are enough to find it.
        if binding.value is None:
            raise ConfigError(
                f"{file}:{line}: the line has no '=' (not shown: it may be a secret)",
                "lines look like KEY=value (KEY= for empty); remove or fix that line",
            )
        if not _valid_key(key):
            raise ConfigError(
                f"{file}:{line}: invalid variable name before '=' (not shown: it may be a secret)",
                "names use letters, digits and underscores and do not start with a digit",
            )
        after = binding.original.string.split("=", 1)[1].lstrip()
        entries.append(Entry(key, binding.value, file, line, literal=after.startswith("'")))
    return entries


def _unparsable(file: str, line: int, text: str) -> ConfigError:
    # Show the name only, and only when it is one: the rest may be a secret.
    text = text.strip().removeprefix("export ").strip()
    name = text.split("=", 1)[0].strip()
    shown = f" ({name[:40]}=...)" if "=" in text and _valid_key(name) else ""
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


def read_text(path: Path, name: str) -> str | None:
    """The text of the env file ``path`` (shown as ``name``); None when there is none.

    A folder or a link to nothing where the file belongs is an error (skipping it would
    drop its settings without a word), and so is text that is not UTF-8 (naming the line).
    """
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
    if env != "dev" and (created := split_secrets(project)):
        from .console import warn  # said once, when it happens

        warn(
            f"each target has its own secrets file now: {SECRETS} stays local's, and its "
            f"values were copied to {' and '.join(created)} (what staging and prod used)",
            "rotate them per target (`nself secrets rotate NAME --env prod`); "
            "docs/environments.md explains the layout",
        )
    for name in layer_files(env):
        path = project / name
        text = read_text(path, name)
        if text is None:
            continue
        if name in SECRETS_FILES:
            check_private(path)
        entries.extend(parse_text(text, name))
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
        return _Interpolation(self, entry, stack).run()

    def resolve_all(self) -> dict[str, str]:
        return {key: self._resolve(key, ()) for key in sorted(self.history)}


_FORMS = "write ${NAME}, ${NAME:-default} (unset or empty) or ${NAME-default} (unset)"


class _Interpolation:
    """``${NAME}``, ``${NAME:-default}`` and ``${NAME-default}`` (Compose's meaning), the
    default itself may hold references. ``$NAME`` without braces and a lone ``$`` stay
    literal. Errors name the file, line and key, never the value (it may be a secret)."""

    def __init__(self, resolver: Resolver, entry: Entry, stack: tuple[str, ...]) -> None:
        self.resolver, self.entry, self.stack, self.raw = resolver, entry, stack, entry.raw

    def run(self) -> str:
        text, _end = self._text(0, evaluate=True, nested=False)
        return text

    def _malformed(self, what: str, hint: str = "") -> ConfigError:
        return ConfigError(
            f"{self.entry.where}: malformed value of {self.entry.key}: {what}",
            hint or f"{_FORMS}; single quotes keep a value literal",
        )

    def _text(self, pos: int, evaluate: bool, nested: bool) -> tuple[str, int]:
        """The text from ``pos`` up to the end (or, in a default, its closing ``}``)."""
        raw, out = self.raw, []
        while True:
            dollar = raw.find("${", pos)
            close = raw.find("}", pos) if nested else -1
            if close != -1 and (dollar == -1 or close < dollar):
                out.append(raw[pos:close])
                return "".join(out), close
            if dollar == -1:
                if nested:
                    raise self._malformed("a '${' is not closed by '}'")
                out.append(raw[pos:])
                return "".join(out), len(raw)
            out.append(raw[pos:dollar])
            value, pos = self._reference(dollar + 2, evaluate)
            out.append(value)

    def _reference(self, pos: int, evaluate: bool) -> tuple[str, int]:
        """One reference whose name starts at ``pos``: its value and the index after it."""
        raw, end = self.raw, pos
        while end < len(raw) and raw[end].isascii() and (raw[end].isalnum() or raw[end] == "_"):
            end += 1
        name = raw[pos:end]
        if end >= len(raw) or raw[end] not in "}:-?+=":
            if end >= len(raw):
                raise self._malformed("a '${' is not closed by '}'")
            raise self._malformed("a '${' is not followed by a variable name and '}'")
        if not name or name[0].isdigit():
            raise self._malformed("a '${' is not followed by a variable name")
        if raw[end] == "}":
            return (self._value(name) if evaluate else ""), end + 1
        if raw.startswith(":-", end):
            start, empty_counts = end + 2, True
        elif raw[end] == "-":
            start, empty_counts = end + 1, False
        else:
            op = raw[end : end + 2] if raw[end] == ":" else raw[end]
            raise self._malformed(
                f"${{{name}{op}...}} is a form nself does not interpolate",
                f"{_FORMS}; single quotes keep a value literal",
            )
        value = None
        if evaluate and name in self.resolver.history:
            value = self.resolver._resolve(name, self.stack)
            if empty_counts and value == "":
                value = None
        default, close = self._text(start, evaluate and value is None, nested=True)
        return (default if value is None else value), close + 1

    def _value(self, name: str) -> str:
        if name in self.resolver.history:
            return self.resolver._resolve(name, self.stack)
        raise UndefinedReference(
            f"{self.entry.where}: {self.entry.key} refers to undefined variable ${{{name}}}",
            f"define {name} or write ${{{name}:-default}}",
            name,
            self.entry,
        )


class UndefinedReference(ConfigError):
    """A value refers to ``${name}`` and no layer sets ``name``."""

    def __init__(self, message: str, hint: str, name: str, entry: Entry) -> None:
        super().__init__(message, hint)
        self.name, self.entry = name, entry


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
    if requested is not None:  # `--env ''` too: a usage error, not dev
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
