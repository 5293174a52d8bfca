"""The project's Hasura metadata as files: which roles may do what on which table.

Read from the layout the Hasura CLI writes (metadata version 3):
``hasura/metadata/databases/databases.yaml`` naming each source's ``tables``, usually
``"!include <source>/tables/tables.yaml"``, itself a list of ``"!include public_<table>.yaml"``
(without ``databases.yaml``, every ``hasura/metadata/databases/*/tables/tables.yaml``), and
the tables plugins bring (``hasura/plugins/<plugin>/tables.yaml``, written by the build).
``!include`` may only name files inside ``hasura/``; YAML is read with the safe loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METADATA_DIR = "hasura/metadata"
PLUGINS_DIR = "hasura/plugins"
KINDS = ("select", "insert", "update", "delete")
# Hasura's role for requests without a token (HASURA_GRAPHQL_UNAUTHORIZED_ROLE), and the
# usual name of it elsewhere.
ANONYMOUS = ("public", "anonymous")
INCLUDE = "!include "


@dataclass
class TableMeta:
    schema: str
    name: str
    where: str  # the file that describes it
    # How the source serving it connects (its ``configuration`` as text; "" when not
    # known), None for a plugin's own generated file (served by its own source).
    connection: str | None = ""
    # kind ("select", ...) -> role -> its permission (columns, filter, check, set, ...)
    permissions: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Metadata:
    tables: list[TableMeta] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files that could not be read

    @property
    def found(self) -> bool:
        return bool(self.tables) or bool(self.problems)


class _Include:
    def __init__(self, path: str) -> None:
        self.path = path


# Metadata of one table is a few kilobytes; a plugin's file is not trusted to be small.
MAX_BYTES = 1 << 20


def _loader() -> Any:
    from nself_builtins.shared.manifest import hasura_yaml_loader

    class Loader(hasura_yaml_loader()):  # type: ignore[misc]
        pass

    def include(loader: Any, node: Any) -> _Include:
        return _Include(str(loader.construct_scalar(node)))

    Loader.add_constructor("!include", include)
    return Loader


class _Reader:
    def __init__(self, project: Path) -> None:
        self.project = project
        self.root = (project / "hasura").resolve()
        self.meta = Metadata()
        self.loader = _loader()
        self.connection: str | None = ""  # of the source being read
        self.read_files: set[Path] = set()  # tables files read through a source

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.project).as_posix()
        except ValueError:
            return str(path)

    def load(self, path: Path) -> Any:
        import yaml

        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            self.meta.problems.append(f"{self.rel(path)}: outside hasura/, not read")
            return None
        try:
            if resolved.stat().st_size > MAX_BYTES:
                self.meta.problems.append(f"{self.rel(path)}: larger than 1 MiB, not read")
                return None
            return yaml.load(resolved.read_text(encoding="utf-8"), Loader=self.loader)
        except (OSError, UnicodeDecodeError) as exc:
            self.meta.problems.append(f"{self.rel(path)}: {exc}")
        except RecursionError:
            self.meta.problems.append(f"{self.rel(path)}: nested too deeply, not read")
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            why = getattr(exc, "problem", None) or str(exc)
            self.meta.problems.append(f"{self.rel(path)}{line}: not valid YAML ({why})")
        return None

    def follow(self, value: Any, base: Path) -> tuple[Any, Path]:
        """The value an include stands for (and the file it came from): the Hasura CLI writes
        the string ``"!include FILE"``; a YAML tag ``!include FILE`` means the same."""
        if isinstance(value, str) and value.startswith(INCLUDE):
            value = _Include(value[len(INCLUDE) :].strip())
        if isinstance(value, _Include):
            path = base.parent / value.path
            return self.load(path), path
        return value, base

    def tables_file(self, path: Path) -> None:
        entries = self.load(path)
        if entries is None:
            return
        if not isinstance(entries, list):
            self.meta.problems.append(f"{self.rel(path)}: not a list of tables")
            return
        for entry in entries:
            value, source = self.follow(entry, path)
            self.table(value, source)

    def table(self, entry: Any, source: Path) -> None:
        if entry is None:
            return  # an include that could not be read (already reported)
        table = entry.get("table") if isinstance(entry, dict) else None
        if isinstance(table, str):
            table = {"schema": "public", "name": table}
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            self.meta.problems.append(f"{self.rel(source)}: an entry without table: {{name}}")
            return
        meta = TableMeta(
            str(table.get("schema") or "public"),
            table["name"],
            self.rel(source),
            connection=self.connection,
        )
        for kind in KINDS:
            granted: dict[str, dict[str, Any]] = {}
            for item in entry.get(f"{kind}_permissions") or ():
                if isinstance(item, dict) and isinstance(item.get("role"), str):
                    permission = item.get("permission")
                    granted[item["role"]] = permission if isinstance(permission, dict) else {}
            meta.permissions[kind] = granted
        self.meta.tables.append(meta)

    def sources(self) -> None:
        base = self.project / METADATA_DIR
        databases = base / "databases" / "databases.yaml"
        if databases.is_file():
            listed = self.load(databases)
            for source in listed if isinstance(listed, list) else ():
                if not isinstance(source, dict):
                    continue
                self.connection = str(source.get("configuration") or "")
                tables, origin = self.follow(source.get("tables"), databases)
                self.read_files.add(origin.resolve())
                if isinstance(tables, list):
                    for entry in tables:
                        value, where = self.follow(entry, origin)
                        self.table(value, where)
                self.connection = ""
        else:
            for path in sorted((base / "databases").glob("*/tables/tables.yaml")):
                self.tables_file(path)
        if (base / "tables.yaml").is_file():  # metadata version 2: one file
            self.tables_file(base / "tables.yaml")
        self.connection = None
        for path in sorted((self.project / PLUGINS_DIR).glob("*/tables.yaml")):
            if path.resolve() not in self.read_files:  # listed under its source already
                self.tables_file(path)
        self.connection = ""


def read(project: Path) -> Metadata:
    reader = _Reader(project)
    reader.sources()
    return reader.meta


# -- what a permission allows ---------------------------------------------------------------
def _session_var(value: Any) -> str | None:
    if isinstance(value, str) and value.lower().startswith("x-hasura-"):
        return value.lower()
    return None


def pins(expression: Any, column: str, variable: str) -> bool:
    """Whether a boolean expression keeps only rows whose ``column`` equals the session
    variable ``variable``: ``{column: {_eq: X-Hasura-...}}``, in any ``_and`` or in every
    branch of an ``_or``."""
    if not isinstance(expression, dict):
        return False
    for key, value in expression.items():
        if key == column and isinstance(value, dict) and _session_var(value.get("_eq")) == variable:
            return True
        if (
            key == "_and"
            and isinstance(value, list)
            and any(pins(v, column, variable) for v in value)
        ):
            return True
        if (
            key == "_or"
            and isinstance(value, list)
            and value
            and all(pins(v, column, variable) for v in value)
        ):
            return True
    return False


def comparisons(expression: Any) -> list[tuple[str, str]]:
    """Every ``(column, session variable)`` an expression compares, at any depth."""
    found: list[tuple[str, str]] = []
    if isinstance(expression, dict):
        for key, value in expression.items():
            if isinstance(value, dict) and not key.startswith("_"):
                for op, operand in value.items():
                    var = _session_var(operand)
                    if op.startswith("_") and var:
                        found.append((key, var))
            found += comparisons(value)
    elif isinstance(expression, list):
        for item in expression:
            found += comparisons(item)
    return found


@dataclass
class SourceMeta:
    """A database source of the project's Hasura metadata (``databases.yaml``)."""

    name: str
    url_env: str | None  # the env name its URL is read from (``from_env``); None: other
    read_replicas: bool  # ``read_replicas`` is set (honoured by Hasura Cloud/EE only)


def database_sources(project: Path) -> tuple[list[SourceMeta], list[str]]:
    """The sources ``hasura/metadata/databases/databases.yaml`` lists, and the files that
    could not be read; no file: none (Hasura then adds the source ``default`` itself)."""
    reader = _Reader(project)
    path = project / METADATA_DIR / "databases" / "databases.yaml"
    if not path.is_file():
        return [], []
    listed = reader.load(path)
    found: list[SourceMeta] = []
    for source in listed if isinstance(listed, list) else ():
        if not isinstance(source, dict) or source.get("kind", "postgres") != "postgres":
            continue
        configuration = source.get("configuration")
        info = configuration.get("connection_info") if isinstance(configuration, dict) else None
        url = info.get("database_url") if isinstance(info, dict) else None
        env = url.get("from_env") if isinstance(url, dict) else None
        found.append(
            SourceMeta(
                str(source.get("name", "?")),
                env if isinstance(env, str) else None,
                isinstance(configuration, dict) and bool(configuration.get("read_replicas")),
            )
        )
    return found, reader.meta.problems
