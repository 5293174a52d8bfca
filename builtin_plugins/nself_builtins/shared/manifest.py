"""The manifest of a declarative plugin bundle (``plugin.toml``): parse it, lint it.

A bundle is a folder (or an archive of one) with a ``plugin.toml`` and the data files it
names: SQL migrations, Hasura metadata, an nginx fragment, config templates. It holds no
code nself runs. ``docs/plugins/manifest.md`` documents every field; this module is the
reference implementation, and every mistake it finds is reported with the file, the line
when it can be found, the field and what to write instead.

Only the standard library is imported at module level: this module is loaded on every
``nself build`` of a project with plugins.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from nself_sdk import ImageContract, NselfError, Problem
from nself_sdk.checks import is_image

from . import boundary

MANIFEST_FILE = "plugin.toml"
# The seed reserves this block for plugins (3010-3020 are frontend dev servers, 3021 admin).
PORT_FIRST, PORT_LAST = 3820, 3849
TIERS = ("free", "pro")
NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
SETTING = re.compile(r"^[A-Z][A-Z0-9_]*$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DURATION = re.compile(r"^\d+(ms|s|m|h)$")
SIZE = re.compile(r"^\d+[kKmMgG]?$")
MIGRATION_FILE = re.compile(r"^(\d{4,14})_([a-z0-9][a-z0-9_]*)\.(up|down)\.sql$")
REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
GENERATORS = ("token", "password", "hex")
SETTING_TYPES = ("string", "integer", "boolean")
BOOLEANS = frozenset({"1", "0", "true", "false", "yes", "no", "on", "off"})
# Names nself itself or the CLI needs; a plugin may not take them.
RESERVED_NAMES = frozenset({"nself", "plugin", "plugins", "all", "core", "builtin", "np"})


class ManifestError(NselfError):
    """A bundle with one or more mistakes; ``problems`` lists each on its own line."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        super().__init__(first.message, first.hint)
        self.problems = problems


@dataclass(frozen=True)
class SettingSpec:
    """An env variable the plugin reads (``[settings.NAME]``)."""

    name: str
    default: str | None = None
    description: str = ""
    secret: bool = False
    required: bool = False
    generate: str | None = None
    min_length: int = 0
    type: str = "string"
    choices: tuple[str, ...] = ()

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not acceptable for this setting, or ``None``."""
        if self.type == "integer":
            try:
                int(value)
            except ValueError:
                return f"{value!r} is not a whole number"
        if self.type == "boolean" and value.strip().lower() not in BOOLEANS:
            return f"{value!r} is not true or false"
        if self.choices and value not in self.choices:
            return f"{value!r} is not one of {', '.join(self.choices)}"
        return None


@dataclass(frozen=True)
class HealthSpec:
    """How to tell the plugin is healthy: an HTTP path, a command in the container, or both."""

    path: str | None = None
    command: tuple[str, ...] | None = None
    interval: str = "10s"
    timeout: str = "5s"
    retries: int = 5
    start_period: str = "20s"


@dataclass(frozen=True)
class FileSpec:
    """A config template in the bundle, rendered at build time and mounted read-only."""

    source: str
    target: str


@dataclass(frozen=True)
class ServiceSpec:
    image: str
    port: int | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    health: HealthSpec | None = None
    volumes: dict[str, str] = field(default_factory=dict)
    tmpfs: tuple[str, ...] = ()
    user: str | None = None
    cap_add: tuple[str, ...] = ()
    read_only: bool = False
    contract: ImageContract | None = None


@dataclass(frozen=True)
class RouteSpec:
    """The plugin's public virtual host, ``subdomain.BASE_DOMAIN``."""

    subdomain: str
    websocket: bool = False
    max_body_size: str | None = None
    internal_only: bool = False
    fragment: str | None = None


@dataclass(frozen=True)
class DatabaseSpec:
    """The plugin's own schema (named after it), owned by its own database role."""

    schema: str
    migrations: str | None = None
    hasura_metadata: str | None = None
    extensions: tuple[str, ...] = ()
    table_prefix: str = ""  # no longer used: the schema is the boundary


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    description: str
    tier: str = "free"
    license: str | None = None
    requires_nself: str = "*"
    homepage: str | None = None
    env_prefix: str = ""
    access: tuple[str, ...] = ()
    dependencies: dict[str, str] = field(default_factory=dict)
    service: ServiceSpec | None = None
    settings: tuple[SettingSpec, ...] = ()
    route: RouteSpec | None = None
    files: tuple[FileSpec, ...] = ()
    database: DatabaseSpec | None = None

    @property
    def port_setting(self) -> str:
        """The derived setting holding the plugin's port (e.g. ``PGBOUNCER_PORT``)."""
        return f"{self.env_prefix}PORT"

    @property
    def host_setting(self) -> str:
        """The derived setting holding the plugin's hostname on the stack network."""
        return f"{self.env_prefix}HOST"

    @property
    def database_url_setting(self) -> str:
        """The derived setting: a connection URL for the plugin's own database role."""
        return f"{self.env_prefix}DATABASE_URL"

    @property
    def image_setting(self) -> str:
        """The setting that runs another image in the plugin's place (a mirror's)."""
        return f"{self.env_prefix}IMAGE"

    @property
    def database_password_setting(self) -> str:
        """The generated secret: the password of the plugin's own database role."""
        return f"{self.env_prefix}DATABASE_PASSWORD"

    def nself_settings(self) -> frozenset[str]:
        """The settings nself declares or derives for the plugin (its port, host, database)."""
        names = (
            {self.port_setting, self.host_setting, self.image_setting}
            if self.service is not None
            else set()
        )
        if self.database is not None:
            names |= {self.database_url_setting, self.database_password_setting}
        return frozenset(names)

    def own_settings(self) -> frozenset[str]:
        """Every setting that is the plugin's: declared in [settings] or set by nself."""
        return frozenset(s.name for s in self.settings) | self.nself_settings()


def default_env_prefix(name: str) -> str:
    return name.upper().replace("-", "_") + "_"


# -- semver ranges ----------------------------------------------------------------------------

_CLAUSE = re.compile(r"^(>=|<=|==|!=|>|<|=|\^|~)?\s*v?(\d+(?:\.\d+){0,2}(?:[-+][0-9A-Za-z.+-]+)?)$")


_NUM = r"(?:0|[1-9]\d*)"
_IDENT = r"(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)"
_PRE = rf"(?:-{_IDENT}(?:\.{_IDENT})*)?"
_BUILD = r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
# Semantic Versioning 2.0.0, checked without importing ``semver`` (bundles load on every
# build); ``semver`` does the comparisons.
SEMVER = re.compile(rf"^{_NUM}\.{_NUM}\.{_NUM}{_PRE}{_BUILD}$")
_PARTIAL = re.compile(rf"^{_NUM}(?:\.{_NUM}(?:\.{_NUM}{_PRE}{_BUILD})?)?$")


def check_range(spec: str) -> None:
    """Raise ``ValueError`` with a readable reason unless ``spec`` is a valid range."""
    spec = spec.strip()
    if spec in ("", "*"):
        return
    for raw in spec.split(","):
        part = raw.strip()
        match = _CLAUSE.match(part)
        if not match:
            raise ValueError(f"{part!r} is not a version clause like '>=0.1.0'")
        if not _PARTIAL.match(match.group(2)):
            raise ValueError(f"{match.group(2)!r} is not a semantic version")


def _version(text: str) -> Any:
    import semver

    return semver.Version.parse(text, optional_minor_and_patch=True)


def parse_range(spec: str) -> list[tuple[str, Any]]:
    """``">=0.1, <1.0"`` -> clauses; ``*`` or empty matches everything.

    ``^1.2`` means ``>=1.2.0, <2.0.0`` (``^0.3`` means ``<0.4.0``), ``~1.2`` means
    ``>=1.2.0, <1.3.0``; a bare version means exactly that version.
    Raises ``ValueError`` with a readable reason.
    """
    spec = spec.strip()
    if spec in ("", "*"):
        return []
    clauses: list[tuple[str, Any]] = []
    for raw in spec.split(","):
        part = raw.strip()
        match = _CLAUSE.match(part)
        if not match:
            raise ValueError(f"{part!r} is not a version clause like '>=0.1.0'")
        op, text = match.group(1) or "==", match.group(2)
        try:
            version = _version(text)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a semantic version ({exc})") from None
        if op == "=":
            op = "=="
        if op == "^":
            upper = (
                version.bump_major()
                if version.major
                else (version.bump_minor() if version.minor else version.bump_patch())
            )
            clauses += [(">=", version), ("<", upper)]
        elif op == "~":
            clauses += [(">=", version), ("<", version.bump_minor())]
        else:
            clauses.append((op, version))
    return clauses


def version_matches(spec: str, version: str) -> bool:
    """Whether ``version`` satisfies the range ``spec`` (see ``parse_range``)."""
    have = _version(version)
    for op, want in parse_range(spec):
        cmp = have.compare(want)
        ok = {
            ">=": cmp >= 0,
            "<=": cmp <= 0,
            ">": cmp > 0,
            "<": cmp < 0,
            "==": cmp == 0,
            "!=": cmp != 0,
        }[op]
        if not ok:
            return False
    return True


# -- parsing ----------------------------------------------------------------------------------

_SCHEMA: dict[str, set[str]] = {
    "": {
        "plugin",
        "dependencies",
        "service",
        "settings",
        "route",
        "files",
        "database",
    },
    "plugin": {
        "name",
        "version",
        "description",
        "tier",
        "license",
        "requires_nself",
        "homepage",
        "env_prefix",
        "access",
    },
    "service": {
        "image",
        "port",
        "command",
        "entrypoint",
        "environment",
        "depends_on",
        "health",
        "volumes",
        "tmpfs",
        "user",
        "cap_add",
        "read_only",
        "contract",
    },
    "service.health": {"path", "command", "interval", "timeout", "retries", "start_period"},
    "service.contract": {
        "source",
        "user",
        "username",
        "starts_as",
        "capabilities",
        "writable",
        "writes",
        "chowns",
        "tools",
        "env",
        "required",
        "ports",
        "platforms",
        "notes",
    },
    "setting": {
        "default",
        "description",
        "secret",
        "required",
        "generate",
        "min_length",
        "type",
        "choices",
    },
    "route": {"subdomain", "websocket", "max_body_size", "internal_only", "fragment"},
    "files": {"source", "target"},
    "database": {"table_prefix", "migrations", "hasura_metadata", "extensions"},
}


class _Collector:
    """Gathers problems, each located in the manifest text when possible."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.problems: list[Problem] = []
        self.lines: list[int] = []
        self._lines = text.splitlines()

    def sorted(self) -> list[Problem]:
        """The problems in the order of the file (unlocated ones first)."""
        order = sorted(range(len(self.problems)), key=lambda i: self.lines[i])
        return [self.problems[i] for i in order]

    def line_of(self, table: str, key: str | None = None) -> int | None:
        """Line number of ``key`` inside ``[table]`` (or of the header), best effort."""
        current = ""
        header_line: int | None = None
        for number, raw in enumerate(self._lines, start=1):
            line = raw.strip()
            header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
            if header:
                current = header.group(1).replace('"', "").replace(" ", "")
                if current == table and header_line is None:
                    header_line = number
                    if key is None:
                        return number
                continue
            if key is not None and current == table:
                match = re.match(r'^"?([A-Za-z0-9_.-]+)"?\s*=', line)
                if match and match.group(1) == key:
                    return number
        if key is not None and "." not in key:
            # inline tables: `health = { path = ... }` or dotted `health.path = ...`
            parent, _, leaf = table.rpartition(".")
            if parent or table:
                found = self.line_of(parent, leaf) if parent else None
                if found:
                    return found
        return header_line

    def add(
        self,
        table: str,
        key: str | None,
        message: str,
        hint: str | None = None,
        *,
        level: str = "error",
    ) -> None:
        where = self.source
        line = self.line_of(table, key)
        if line is not None:
            where += f":{line}"
        label = f"[{table}]" if table else ""
        if key is not None:
            label = f"{label} {key}".strip()
        text = f"{where}: {label}: {message}" if label else f"{where}: {message}"
        self.lines.append(line or 0)
        self.problems.append(Problem("error" if level == "error" else "warning", text, hint))

    def unknown_keys(self, table: str, data: dict[str, Any], schema: str | None = None) -> None:
        allowed = _SCHEMA[schema if schema is not None else table]
        for key in data:
            if key not in allowed:
                import difflib

                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"known keys: {', '.join(sorted(allowed))}"
                )
                self.add(table, key, "unknown key", hint)


def _str(
    c: _Collector, table: str, data: dict[str, Any], key: str, required: bool = False
) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            c.add(table, key, "is required", f'add `{key} = "..."` to [{table}]')
        return None
    if not isinstance(value, str):
        c.add(table, key, f"must be a string, not {type(value).__name__}")
        return None
    return value


def _printable(c: _Collector, table: str, data: dict[str, Any], key: str) -> None:
    """Text nself shows (a description, a licence name) is one line of printable
    characters: an escape sequence would rewrite what the terminal shows, such as the
    list of what the user approves."""
    value = data.get(key)
    if isinstance(value, str) and not value.isprintable():
        c.add(table, key, "must be one line of printable text (no control characters)")


def _bool(c: _Collector, table: str, data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        c.add(table, key, f"must be true or false, not {value!r}")
        return False
    return value


def _str_list(c: _Collector, table: str, data: dict[str, Any], key: str) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        c.add(table, key, "must be a list of strings", f'write it like {key} = ["a", "b"]')
        return None
    return tuple(value)


def _str_map(c: _Collector, table: str, data: dict[str, Any], key: str) -> dict[str, str]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        c.add(table, key, "must be a table of strings", f"use a [{table}.{key}] table")
        return {}
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, bool | int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str):
            c.add(f"{table}.{key}", k, "must be a string", f'quote it: {k} = "{v}"')
            continue
        out[k] = v
    return out


def _safe_relative(c: _Collector, table: str, key: str, value: str) -> str | None:
    path = PurePosixPath(value)
    if (
        not value
        or path.is_absolute()
        or ".." in path.parts
        or not boundary.BUNDLE_PATH.match(path.as_posix())
    ):
        c.add(
            table,
            key,
            f"{value!r} must be a path inside the bundle",
            "use a relative path of letters, digits and ._- without '..'",
        )
        return None
    return path.as_posix()


def parse_manifest(text: str, source: str = MANIFEST_FILE) -> Manifest:
    """Parse and check a manifest's text; raises ``ManifestError`` listing every mistake."""
    manifest, problems = _parse(text, source)
    errors = [p for p in problems if p.level == "error"]
    if errors or manifest is None:
        raise ManifestError(errors or problems)
    return manifest


def _parse(text: str, source: str) -> tuple[Manifest | None, list[Problem]]:
    c = _Collector(text, source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [
            Problem("error", f"{source}: not valid TOML: {exc}", "check quotes and brackets")
        ]
    c.unknown_keys("", data)
    head = data.get("plugin")
    if not isinstance(head, dict):
        c.add("", None, "the [plugin] table is missing", "start the file with [plugin] name = ...")
        return None, c.sorted()
    c.unknown_keys("plugin", head)

    name = _str(c, "plugin", head, "name", required=True) or ""
    if name and not NAME.match(name):
        c.add(
            "plugin",
            "name",
            f"{name!r} is not a valid plugin name",
            "use 2-40 lowercase letters, digits and '-', starting with a letter",
        )
    elif name in RESERVED_NAMES:
        c.add("plugin", "name", f"{name!r} is reserved by nself", "choose another name")

    version = _str(c, "plugin", head, "version", required=True) or ""
    if version and not SEMVER.match(version):
        c.add(
            "plugin",
            "version",
            f"{version!r} is not a semantic version",
            "use MAJOR.MINOR.PATCH, e.g. 1.0.0",
        )
    description = _str(c, "plugin", head, "description", required=True) or ""
    for key in ("description", "license", "homepage"):
        _printable(c, "plugin", head, key)
    tier = _str(c, "plugin", head, "tier") or "free"
    if tier not in TIERS:
        c.add("plugin", "tier", f"{tier!r} is not a licence tier", "use free or pro")
    requires = _str(c, "plugin", head, "requires_nself") or "*"
    try:
        check_range(requires)
    except ValueError as exc:
        c.add("plugin", "requires_nself", str(exc), 'write a range like ">=0.1.0, <1.0.0"')
    prefix = _str(c, "plugin", head, "env_prefix") or (default_env_prefix(name) if name else "")
    if prefix and not re.fullmatch(r"[A-Z][A-Z0-9_]*_", prefix):
        c.add(
            "plugin",
            "env_prefix",
            f"{prefix!r} must be upper-case and end with '_'",
            f'e.g. env_prefix = "{default_env_prefix(name or "my-plugin")}"',
        )
    elif prefix and (why := boundary.env_prefix_problem(prefix)) is not None:
        c.add(
            "plugin",
            "env_prefix" if "env_prefix" in head else "name",
            why,
            'set env_prefix = "..." to a prefix of your own (e.g. the name of your '
            "project or company)",
        )
    access = _str_list(c, "plugin", head, "access") or ()
    for asked in access:
        if (why := boundary.access_problem(asked)) is not None:
            c.add("plugin", "access", why)

    dependencies: dict[str, str] = {}
    deps = data.get("dependencies", {})
    if not isinstance(deps, dict):
        c.add("", "dependencies", "must be a table", '[dependencies]\nother-plugin = ">=1.0"')
    else:
        for dep, spec in deps.items():
            if not NAME.match(dep):
                c.add("dependencies", dep, f"{dep!r} is not a plugin name")
            elif dep == name:
                c.add("dependencies", dep, "a plugin cannot depend on itself")
            if not isinstance(spec, str):
                c.add("dependencies", dep, "must be a version range string", 'e.g. ">=1.0"')
                continue
            try:
                check_range(spec)
            except ValueError as exc:
                c.add("dependencies", dep, str(exc), 'write a range like ">=1.0.0, <2.0.0"')
            dependencies[dep] = spec

    settings = _settings(c, data, prefix)
    service = _service(c, data, prefix)
    route = _route(c, data, name, service)
    files = _files(c, data, service)
    database = _database(c, data, name)
    if "database-read" in access and database is None:
        c.add(
            "plugin",
            "access",
            "'database-read' is granted to the plugin's own database role",
            "add a [database] table",
        )
    manifest = Manifest(
        name=name,
        version=version,
        description=description,
        tier=tier,
        license=_str(c, "plugin", head, "license"),
        requires_nself=requires,
        homepage=_str(c, "plugin", head, "homepage"),
        env_prefix=prefix,
        access=tuple(access),
        dependencies=dependencies,
        service=service,
        settings=tuple(settings),
        route=route,
        files=tuple(files),
        database=database,
    )
    _check_references(c, manifest)
    if any(p.level == "error" for p in c.problems):
        return None, c.sorted()
    return manifest, c.sorted()


def _check_references(c: _Collector, m: Manifest) -> None:
    """Every ``${NAME}`` the container gets must be the plugin's, public, or granted.

    A setting's default counts too: the build resolves a reference in it, so
    ``default = "${POSTGRES_PASSWORD}"`` would hand the container the password through a
    setting of the plugin's own."""
    own = m.own_settings()
    places: list[tuple[str, str, str]] = [
        (f"settings.{s.name}", "default", s.default) for s in m.settings if s.default
    ]
    service = m.service
    if service is not None:
        places += [
            ("service.environment", key, value) for key, value in service.environment.items()
        ]
        for key, parts in (
            ("command", service.command),
            ("entrypoint", service.entrypoint),
        ):
            places += [("service", key, part) for part in parts or ()]
        if service.health is not None:
            places += [("service.health", "command", part) for part in service.health.command or ()]
    for table, key, value in places:
        for ref in boundary.references(value):
            if ref.startswith(m.env_prefix) and ref not in own:
                c.add(
                    table,
                    key,
                    f"refers to ${{{ref}}}, which [settings] does not declare",
                    f"add [settings.{ref}] or fix the name",
                )
            elif (why := boundary.reference_problem(ref, own, m.access)) is not None:
                c.add(table, key, why, "see docs/plugins/security.md")


def _settings(c: _Collector, data: dict[str, Any], prefix: str) -> list[SettingSpec]:
    raw = data.get("settings", {})
    if not isinstance(raw, dict):
        c.add("", "settings", "must be a table of [settings.NAME] tables")
        return []
    out: list[SettingSpec] = []
    reserved = {
        f"{prefix}{suffix}"
        for suffix in ("PORT", "HOST", "IMAGE", "DATABASE_URL", "DATABASE_PASSWORD")
    }
    for name, spec in raw.items():
        table = f"settings.{name}"
        if not isinstance(spec, dict):
            c.add(table, None, "must be a table", f'[settings.{name}]\ndefault = "..."')
            continue
        c.unknown_keys(table, spec, "setting")
        if not SETTING.match(name):
            c.add(table, None, f"{name!r} is not an env variable name", "use UPPER_CASE")
            continue
        if prefix and not name.startswith(prefix):
            c.add(
                table,
                None,
                f"{name} does not start with the plugin's prefix {prefix}",
                f"rename it {prefix}{name} so plugins never share a setting",
            )
        if name in reserved:
            c.add(table, None, f"{name} is set by nself for the plugin", "remove it")
        elif (why := boundary.reserved_setting_problem(name)) is not None:
            c.add(table, None, why, "plugins declare settings under a prefix of their own")
        default = spec.get("default")
        if isinstance(default, bool):
            default = "true" if default else "false"
        elif isinstance(default, int | float):
            default = str(default)
        if default is not None and not isinstance(default, str):
            c.add(table, "default", "must be a string, number or boolean")
            default = None
        _printable(c, table, spec, "description")
        secret = _bool(c, table, spec, "secret")
        generate = _str(c, table, spec, "generate")
        if generate is not None and generate not in GENERATORS:
            c.add(
                table, "generate", f"{generate!r} is not a generator", "use token, password or hex"
            )
        if secret and default:
            c.add(
                table,
                "default",
                "a secret cannot have a default",
                'remove it; use generate = "token" to create one per project',
            )
        min_length = spec.get("min_length", 0)
        if not isinstance(min_length, int) or isinstance(min_length, bool) or min_length < 0:
            c.add(table, "min_length", "must be a whole number >= 0")
            min_length = 0
        kind = _str(c, table, spec, "type") or "string"
        if kind not in SETTING_TYPES:
            c.add(
                table, "type", f"{kind!r} is not a setting type", "use string, integer or boolean"
            )
            kind = "string"
        choices = _str_list(c, table, spec, "choices") or ()
        setting = SettingSpec(
            name=name,
            default=default,
            description=_str(c, table, spec, "description") or "",
            secret=secret,
            required=_bool(c, table, spec, "required"),
            generate=generate,
            min_length=min_length,
            type=kind,
            choices=choices,
        )
        if default is not None and (why := setting.problem(default)) is not None:
            c.add(table, "default", why)
        out.append(setting)
    return out


def _port(c: _Collector, table: str, data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        c.add(table, key, f"must be a whole number, not {value!r}")
        return None
    if not PORT_FIRST <= value <= PORT_LAST:
        c.add(
            table,
            key,
            f"{value} is outside the plugin port block {PORT_FIRST}-{PORT_LAST}",
            "leave it out to get the next free port, or pick one inside the block",
        )
        return None
    return value


def _service(c: _Collector, data: dict[str, Any], prefix: str) -> ServiceSpec | None:
    raw = data.get("service")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        c.add("", "service", "must be a table")
        return None
    c.unknown_keys("service", raw)
    image = _str(c, "service", raw, "image", required=True) or ""
    if image and not is_image(image):
        c.add(
            "service",
            "image",
            f"{image!r} is not an image reference",
            "write [registry/]name:tag or name@sha256:..., e.g. nginx:1.27.0",
        )
    elif image:
        last = image.rsplit("/", 1)[-1]
        if ":" not in last and "@" not in image:
            c.add(
                "service",
                "image",
                f"{image!r} has no tag",
                f"pin a version, e.g. {image}:1.2.3, so every install runs the same image",
            )
        elif last.endswith(":latest"):
            c.add("service", "image", "':latest' is not a pinned version", "pin a version tag")
    health = None
    raw_health = raw.get("health")
    if raw_health is not None:
        if not isinstance(raw_health, dict):
            c.add("service", "health", "must be a table", '[service.health]\npath = "/health"')
        else:
            c.unknown_keys("service.health", raw_health)
            path = _str(c, "service.health", raw_health, "path")
            if path is not None and not path.startswith("/"):
                c.add("service.health", "path", f"{path!r} must start with '/'")
            command = _str_list(c, "service.health", raw_health, "command")
            if path is None and command is None:
                c.add("service.health", None, "needs a path, a command or both")
            for key in ("interval", "timeout", "start_period"):
                value = _str(c, "service.health", raw_health, key)
                if value is not None and not DURATION.match(value):
                    c.add("service.health", key, f"{value!r} is not a duration", "e.g. 10s or 1m")
            retries = raw_health.get("retries", 5)
            if not isinstance(retries, int) or isinstance(retries, bool) or retries < 1:
                c.add("service.health", "retries", "must be a whole number >= 1")
                retries = 5
            health = HealthSpec(
                path=path,
                command=command,
                interval=raw_health.get("interval", "10s"),
                timeout=raw_health.get("timeout", "5s"),
                retries=retries,
                start_period=raw_health.get("start_period", "20s"),
            )
    environment = _str_map(c, "service", raw, "environment")
    for key in environment:
        if not ENV_KEY.match(key):
            c.add("service.environment", key, f"{key!r} is not an env variable name")
    volumes = _str_map(c, "service", raw, "volumes")
    for key, target in volumes.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
            c.add("service.volumes", key, "volume names use lowercase letters, digits and '_'")
        if (why := boundary.container_path_problem(target)) is not None:
            c.add("service.volumes", key, why)
    cap_add = _capabilities(c, "service", raw, "cap_add") or ()
    tmpfs = _str_list(c, "service", raw, "tmpfs") or ()
    for item in tmpfs:
        if (why := boundary.container_path_problem(item)) is not None:
            c.add("service", "tmpfs", why)
    user = raw.get("user")
    if user is not None and not isinstance(user, str):
        c.add("service", "user", 'must be a string such as "1000:1000"')
        user = None
    elif user is not None and (why := boundary.user_problem(user)) is not None:
        c.add("service", "user", why)
    depends_on = _str_list(c, "service", raw, "depends_on") or ()
    for dep in depends_on:
        if not boundary.SERVICE_NAME.match(dep):
            c.add("service", "depends_on", f"{dep!r} is not a service name")
    return ServiceSpec(
        contract=_contract(c, raw, image),
        image=image,
        port=_port(c, "service", raw, "port"),
        command=_str_list(c, "service", raw, "command"),
        entrypoint=_str_list(c, "service", raw, "entrypoint"),
        environment=environment,
        depends_on=depends_on,
        health=health,
        volumes=volumes,
        tmpfs=tmpfs,
        user=user,
        cap_add=cap_add,
        read_only=_bool(c, "service", raw, "read_only"),
    )


def _capabilities(
    c: _Collector, table: str, data: dict[str, Any], key: str
) -> tuple[str, ...] | None:
    """Capability names, normalised (``cap_chown`` is ``CHOWN``), each one allowlisted."""
    names = _str_list(c, table, data, key)
    if names is None:
        return None
    out: list[str] = []
    for name in names:
        if (why := boundary.capability_problem(name)) is not None:
            c.add(table, key, why, "drop it: see docs/plugins/security.md")
            continue
        cap = boundary.normalise_capability(name)
        if cap not in out:
            out.append(cap)
    return tuple(out)


PLATFORM = re.compile(r"^linux/(amd64|arm64|arm/v[5-8]|386|ppc64le|s390x|riscv64|mips64le)$")


def _uid(c: _Collector, table: str, data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        c.add(table, key, f"{value!r} is not a uid", "a whole number, e.g. 1000 (0 is root)")
        return None
    return value


def _contract(c: _Collector, raw: dict[str, Any], image: str) -> ImageContract | None:
    """``[service.contract]``: the pinned image's facts, with where each comes from."""
    data = raw.get("contract")
    if data is None:
        return None
    table = "service.contract"
    if not isinstance(data, dict):
        c.add("service", "contract", "must be a table", "[service.contract]\nuser = 1000")
        return None
    c.unknown_keys(table, data)
    source = _str_list(c, table, data, "source") or ()
    if not source or not all(s.startswith("https://") for s in source):
        c.add(
            table,
            "source",
            "must list where the facts come from",
            'the image\'s Dockerfile or docs at the pinned tag: source = ["https://..."]',
        )
    caps = _capabilities(c, table, data, "capabilities")
    ports = data.get("ports")
    if ports is not None and (
        not isinstance(ports, list)
        or not all(isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports)
    ):
        c.add(table, "ports", "must be a list of port numbers", "ports = [8080]")
        ports = None
    platforms = _str_list(c, table, data, "platforms")
    for platform in platforms or ():
        if not PLATFORM.match(platform):
            c.add(table, "platforms", f"{platform!r} is not an os/arch", "e.g. linux/arm64")
    for key in ("writable", "writes", "chowns"):
        for path in _str_list(c, table, data, key) or ():
            if not path.startswith("/"):
                c.add(table, key, f"{path!r} must be an absolute container path")
    return ImageContract(
        image=image,
        source=source,
        user=_uid(c, table, data, "user"),
        username=_str(c, table, data, "username") or "",
        starts_as=_uid(c, table, data, "starts_as"),
        capabilities=caps,
        writable=_str_list(c, table, data, "writable"),
        writes=_str_list(c, table, data, "writes") or (),
        chowns=_str_list(c, table, data, "chowns") or (),
        tools=_str_list(c, table, data, "tools"),
        env=_str_list(c, table, data, "env"),
        required=_str_list(c, table, data, "required") or (),
        ports=tuple(ports) if ports is not None else None,
        platforms=platforms,
        notes=_str(c, table, data, "notes") or "",
    )


def _route(
    c: _Collector, data: dict[str, Any], name: str, service: ServiceSpec | None
) -> RouteSpec | None:
    raw = data.get("route")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        c.add("", "route", "must be a table", '[route]\nsubdomain = "..."')
        return None
    c.unknown_keys("route", raw)
    if service is None:
        c.add("route", None, "a route needs a [service] to send traffic to", "add [service]")
    subdomain = _str(c, "route", raw, "subdomain") or name
    if not SUBDOMAIN.match(subdomain):
        c.add(
            "route",
            "subdomain",
            f"{subdomain!r} is not a DNS label",
            "use lowercase letters, digits and '-'",
        )
    size = _str(c, "route", raw, "max_body_size")
    if size is not None and not SIZE.match(size):
        c.add("route", "max_body_size", f"{size!r} is not an nginx size", "e.g. 10m")
    fragment = _str(c, "route", raw, "fragment")
    if fragment is not None:
        fragment = _safe_relative(c, "route", "fragment", fragment)
    return RouteSpec(
        subdomain=subdomain,
        websocket=_bool(c, "route", raw, "websocket"),
        max_body_size=size,
        internal_only=_bool(c, "route", raw, "internal_only"),
        fragment=fragment,
    )


def _files(c: _Collector, data: dict[str, Any], service: ServiceSpec | None) -> list[FileSpec]:
    raw = data.get("files", [])
    if not isinstance(raw, list):
        c.add(
            "", "files", "must be an array of tables", '[[files]]\nsource = "..."\ntarget = "/..."'
        )
        return []
    if raw and service is None:
        c.add("files", None, "config files need a [service] to mount them into", "add [service]")
    out: list[FileSpec] = []
    targets: set[str] = set()
    for item in raw:
        if not isinstance(item, dict):
            c.add("files", None, "each [[files]] entry must be a table")
            continue
        c.unknown_keys("files", item)
        source = _str(c, "files", item, "source", required=True)
        target = _str(c, "files", item, "target", required=True)
        if source is not None:
            source = _safe_relative(c, "files", "source", source)
        if target is not None and (why := boundary.container_path_problem(target)) is not None:
            c.add("files", "target", why)
            target = None
        if target in targets:
            c.add("files", "target", f"{target} is mounted twice")
        if source and target:
            targets.add(target)
            out.append(FileSpec(source, target))
    return out


def _database(c: _Collector, data: dict[str, Any], name: str) -> DatabaseSpec | None:
    raw = data.get("database")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        c.add("", "database", "must be a table")
        return None
    c.unknown_keys("database", raw)
    if name and (why := boundary.schema_problem(name)) is not None:
        c.add("plugin", "name", why, "a plugin with a [database] needs another name")
    prefix = _str(c, "database", raw, "table_prefix") or ""
    if prefix:
        c.add(
            "database",
            "table_prefix",
            "is no longer used: the plugin's tables live in its own schema "
            f"{boundary.schema_name(name)}",
            "remove it",
            level="warning",
        )
    migrations = _str(c, "database", raw, "migrations")
    if migrations is not None:
        migrations = _safe_relative(c, "database", "migrations", migrations)
    metadata = _str(c, "database", raw, "hasura_metadata")
    if metadata is not None:
        metadata = _safe_relative(c, "database", "hasura_metadata", metadata)
    extensions = _str_list(c, "database", raw, "extensions") or ()
    for ext in extensions:
        if (why := boundary.extension_problem(ext)) is not None:
            c.add("database", "extensions", why)
    return DatabaseSpec(
        schema=boundary.schema_name(name),
        migrations=migrations,
        hasura_metadata=metadata,
        extensions=tuple(sorted(set(extensions))),
        table_prefix=prefix,
    )


# -- the whole bundle ------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationFile:
    version: str
    name: str
    up: str
    down: str | None


@dataclass
class Bundle:
    """A checked bundle folder: its manifest and the data its files hold."""

    root: Path
    manifest: Manifest
    migrations: list[MigrationFile] = field(default_factory=list)
    hasura_tables: list[dict[str, Any]] = field(default_factory=list)
    hasura_text: str = ""
    fragment: tuple[str, ...] = ()
    templates: dict[str, str] = field(default_factory=dict)
    warnings: list[Problem] = field(default_factory=list)


def lint_bundle(root: Path, deep: bool = True) -> tuple[Bundle | None, list[Problem]]:
    """Every problem of the bundle in ``root`` (errors and warnings), and the bundle if usable.

    ``deep=False`` skips parsing the Hasura metadata (YAML): for a bundle that passed the
    full check when it was installed and whose files still match their locked sha256.
    """
    path = root / MANIFEST_FILE
    if not path.is_file():
        return None, [
            Problem(
                "error",
                f"{root}: no {MANIFEST_FILE}",
                "a bundle is a folder with a plugin.toml (`nself plugin new NAME` makes one)",
            )
        ]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, [Problem("error", f"{path}: not UTF-8 text")]
    manifest, problems = _parse(text, str(path))
    if manifest is None:
        return None, problems
    c = _Collector(text, str(path))
    bundle = Bundle(root=root, manifest=manifest)
    _check_files(c, bundle, deep)
    problems = problems + c.sorted()
    bundle.warnings = [p for p in problems if p.level != "error"]
    if any(p.level == "error" for p in problems):
        return None, problems
    return bundle, problems


def load_bundle(root: Path, deep: bool = True) -> Bundle:
    """The checked bundle in ``root``; raises ``ManifestError`` listing every mistake."""
    bundle, problems = lint_bundle(root, deep)
    if bundle is None:
        raise ManifestError([p for p in problems if p.level == "error"])
    return bundle


def _inside(root: Path, rel: str) -> Path | None:
    target = (root / rel).resolve()
    base = root.resolve()
    if target != base and base not in target.parents:
        return None
    return target


def _read(c: _Collector, bundle: Bundle, table: str, key: str, rel: str) -> str | None:
    target = _inside(bundle.root, rel)
    if target is None:
        c.add(table, key, f"{rel} leads outside the bundle")
        return None
    if not target.is_file():
        c.add(table, key, f"{rel} does not exist in the bundle", "add the file or fix the path")
        return None
    try:
        return target.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        c.add(table, key, f"{rel} is not UTF-8 text")
        return None


def _check_files(c: _Collector, bundle: Bundle, deep: bool = True) -> None:
    m = bundle.manifest
    secrets = {s.name for s in m.settings if s.secret}
    for spec in m.files:
        text = _read(c, bundle, "files", "source", spec.source)
        if text is None:
            continue
        used = set(boundary.references(text))
        own = m.own_settings()
        for ref in sorted(used):
            if (why := boundary.reference_problem(ref, own, m.access)) is not None:
                c.add("files", "source", f"{spec.source} {why}")
        leaked = sorted(used & secrets) + sorted(
            r
            for r in used
            if re.search(r"(PASSWORD|SECRET|_KEY$|TOKEN|_URL$)", r)
            and r not in secrets
            and r not in boundary.PUBLIC_SETTINGS
        )
        if leaked:
            c.add(
                "files",
                "source",
                f"{spec.source} refers to secret setting(s) {', '.join(sorted(set(leaked)))}",
                "rendered files are readable on disk; pass secrets to the container "
                "through [service.environment] instead",
            )
        bundle.templates[spec.source] = text
    if m.route is not None and m.route.fragment is not None:
        text = _read(c, bundle, "route", "fragment", m.route.fragment)
        target = _inside(bundle.root, m.route.fragment)
        if text is not None and target is not None:
            directives, problems = boundary.fragment_directives(
                target, m.route.websocket, m.route.fragment
            )
            for problem in problems:
                c.add(
                    "route",
                    "fragment",
                    problem,
                    "a fragment holds plain directives that tune the plugin's own location "
                    "(docs/plugins/security.md)",
                )
            bundle.fragment = tuple(d.text() for d in directives)
    if m.database is not None:
        db = m.database
        if db.migrations is not None:
            bundle.migrations = _check_migrations(c, bundle, db.migrations)
        if db.hasura_metadata is not None:
            text = _read(c, bundle, "database", "hasura_metadata", db.hasura_metadata)
            if text is not None and len(text.encode()) > HASURA_MAX_BYTES:
                c.add(
                    "database",
                    "hasura_metadata",
                    f"{db.hasura_metadata} is larger than 1 MiB: not the metadata of a "
                    "plugin's tables",
                )
            elif text is not None:
                bundle.hasura_text = text
                if deep:
                    bundle.hasura_tables = _check_hasura(c, db.hasura_metadata, text, db.schema)


def _check_migrations(c: _Collector, bundle: Bundle, rel: str) -> list[MigrationFile]:
    folder = _inside(bundle.root, rel)
    if folder is None or not folder.is_dir():
        c.add("database", "migrations", f"{rel} is not a folder in the bundle")
        return []
    ups: dict[str, tuple[str, str]] = {}
    downs: dict[str, str] = {}
    names: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        match = MIGRATION_FILE.match(path.name)
        if not match or not path.is_file():
            c.add(
                "database",
                "migrations",
                f"{rel}/{path.name} is not named like 0001_create_things.up.sql",
                "migrations are VERSION_NAME.up.sql with an optional VERSION_NAME.down.sql",
            )
            continue
        version, name, kind = match.groups()
        if version in names and names[version] != name:
            c.add("database", "migrations", f"{rel}: version {version} is used twice")
            continue
        names[version] = name
        try:
            sql = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            c.add("database", "migrations", f"{rel}/{path.name} is not UTF-8 text")
            continue
        if kind == "up":
            ups[version] = (name, sql)
        else:
            downs[version] = sql
    for version in sorted(set(downs) - set(ups)):
        c.add(
            "database", "migrations", f"{rel}: {version}_{names[version]}.down.sql has no .up.sql"
        )
    if not ups:
        c.add("database", "migrations", f"{rel} holds no *.up.sql migration")
    return [
        MigrationFile(version, name, sql, downs.get(version))
        for version, (name, sql) in sorted(ups.items())
    ]


def hasura_yaml_loader() -> Any:
    """PyYAML's safe loader without aliases: Hasura's files use none, and an alias could
    multiply a plugin's small file into an enormous document for every check that walks
    it (the check of a plugin's metadata, the tenancy wall)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError("aliases (*name) are not read in Hasura metadata")
            return super().compose_node(parent, index)

    return Loader


def _check_hasura(c: _Collector, rel: str, text: str, schema: str) -> list[dict[str, Any]]:
    import yaml

    try:
        data = yaml.load(text, Loader=hasura_yaml_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        c.add(
            "database",
            "hasura_metadata",
            f"{rel}{line}: not valid YAML ({getattr(exc, 'problem', exc)})",
        )
        return []
    except RecursionError:
        c.add("database", "hasura_metadata", f"{rel}: nested too deeply to be Hasura metadata")
        return []
    if not isinstance(data, list):
        c.add(
            "database",
            "hasura_metadata",
            f"{rel} must be a list of Hasura table entries",
            "- table: {schema: public, name: my_table}",
        )
        return []
    tables: list[dict[str, Any]] = []
    for index, entry in enumerate(data, start=1):
        table = entry.get("table") if isinstance(entry, dict) else None
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            c.add(
                "database",
                "hasura_metadata",
                f"{rel}: entry {index} has no table: {{schema, name}}",
            )
            continue
        name = table["name"]
        if table.get("schema") != schema:
            c.add(
                "database",
                "hasura_metadata",
                f"{rel}: entry {index} tracks {table.get('schema')}.{name}, which is not in "
                f"the plugin's schema {schema}",
                f"a plugin's metadata may only describe its own tables: schema: {schema}",
            )
            continue
        for why in _hasura_entry_problems(entry, schema):
            c.add(
                "database",
                "hasura_metadata",
                f"{rel}: entry {index} ({schema}.{name}): {why}",
                "a plugin's metadata describes its tables: relationships and permissions "
                "(docs/plugins/security.md)",
            )
        tables.append(entry)
    return tables


# The metadata of a few tables is kilobytes; the tenancy wall reads no larger plugin file.
HASURA_MAX_BYTES = 1 << 20
# What a plugin's Hasura table entry may hold: how its own tables are exposed and to whom.
HASURA_TABLE_KEYS = frozenset(
    {
        "table",
        "configuration",
        "is_enum",
        "object_relationships",
        "array_relationships",
        "select_permissions",
        "insert_permissions",
        "update_permissions",
        "delete_permissions",
    }
)
# Keys Hasura fills from its own environment (its admin secret, the database's URL...).
HASURA_FROM_ENV = frozenset({"from_env", "value_from_env", "webhook_from_env", "url_from_env"})
_HASURA_REFUSED = {
    "event_triggers": "event triggers are not allowed: Hasura would call a webhook of the "
    "plugin's choosing, with headers it may fill from Hasura's own environment",
    "remote_relationships": "remote relationships are not allowed: they join another "
    "source or a remote schema",
    "computed_fields": "computed fields are not allowed: Hasura runs their function as the "
    "database superuser",
}


# Where a table entry names another table: a relationship's, and a permission's `_exists`
# (Hasura evaluates permission filters with its own rights, whatever the role may read).
HASURA_TABLE_REFERENCES = {
    "remote_table": "a relationship",
    "foreign_key_constraint_on": "a relationship",
    "_exists": "an _exists filter",
}


def _hasura_entry_problems(entry: dict[str, Any], schema: str) -> list[str]:
    problems = [
        _HASURA_REFUSED.get(key, f"{key!r} is not something a plugin's table entry may hold")
        for key in entry
        if key not in HASURA_TABLE_KEYS
    ]
    problems += _hasura_name_problems(entry.get("configuration"), schema)
    stack: list[Any] = [entry]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in HASURA_FROM_ENV:
                    problems.append(f"{key} would read Hasura's own environment")
                elif key in HASURA_TABLE_REFERENCES:
                    other = _hasura_table_named(key, value)
                    if other is not None and other != schema:
                        problems.append(
                            f"{HASURA_TABLE_REFERENCES[key]} reaches a table in the schema "
                            f"{other}: a plugin's metadata may only join its own tables"
                        )
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return problems


def _hasura_name_problems(configuration: Any, schema: str) -> list[str]:
    """GraphQL names a table entry chooses (``custom_name``, ``custom_root_fields``) stay
    under the plugin's schema (``notes_...``, ``insert_notes_...``), as Hasura's own names
    for its tables do: a name the project's own tables use (``users``) fails Hasura's
    whole GraphQL schema, every source's, at its next start."""
    if not isinstance(configuration, dict):
        return []
    named: list[tuple[str, Any]] = [("custom_name", configuration.get("custom_name"))]
    fields = configuration.get("custom_root_fields")
    if isinstance(fields, dict):
        for field, value in fields.items():
            name = value.get("name") if isinstance(value, dict) else value
            named.append((f"custom_root_fields {field}", name))
    own = tuple(f"{verb}{schema}_" for verb in ("", "insert_", "update_", "delete_"))
    return [
        f"{what} {name} is not under {schema}_: the GraphQL names of a plugin's tables start "
        "with its schema, so they cannot clash with the project's"
        for what, name in named
        if name is not None and not (isinstance(name, str) and name.startswith(own))
    ]


def _hasura_table_named(key: str, value: Any) -> str | None:
    """The schema of the table a reference names (a bare name is in public), or None."""
    if key == "_exists":
        value = value.get("_table") if isinstance(value, dict) else None
    elif key == "foreign_key_constraint_on":
        if not isinstance(value, dict) or "table" not in value:
            return None  # a column of the entry's own table
        value = value["table"]
    if isinstance(value, str):
        return "public"
    if isinstance(value, dict):
        return str(value.get("schema") or "public")
    return None


def check_requires_nself(manifest: Manifest, version: str) -> None:
    """Raise a clear error when this nself ``version`` is outside ``requires_nself``."""
    if not version_matches(manifest.requires_nself, version):
        raise NselfError(
            f"plugin {manifest.name} {manifest.version} requires nself "
            f"{manifest.requires_nself}, but this is nself {version}",
            "upgrade nself, or install a version of the plugin made for this nself",
        )


__all__ = [
    "MANIFEST_FILE",
    "PORT_FIRST",
    "PORT_LAST",
    "Bundle",
    "DatabaseSpec",
    "FileSpec",
    "HealthSpec",
    "Manifest",
    "ManifestError",
    "MigrationFile",
    "RouteSpec",
    "ServiceSpec",
    "SettingSpec",
    "check_requires_nself",
    "lint_bundle",
    "load_bundle",
    "parse_manifest",
    "parse_range",
    "version_matches",
]
