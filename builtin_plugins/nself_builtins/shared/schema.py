"""The tables a project's migrations create, read with PostgreSQL's own parser (pglast).

The migrations are replayed statement by statement (plugins' first, then the project's in
version order): ``CREATE TABLE`` (``LIKE``, partitions, ``AS SELECT``), views and
materialized views (their columns from the query: ``*``, joins, subqueries, ``WITH``; the
tables they read), ``ALTER TABLE`` (columns, types, defaults, NOT NULL, primary keys, row
level security), renames, ``SET SCHEMA``, ``DROP``, ``CREATE/DROP POLICY`` and
``SET search_path``. SQL built at run time (a
``DO`` block, a function executing a string) cannot be seen and is not guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# migrations/<version>_<name>/up.sql, as the database plugin names them.
FOLDER = re.compile(r"^(\d+)_([A-Za-z0-9][A-Za-z0-9_]*)$")
# Type names as PostgreSQL's catalog spells them, for messages.
TYPE_NAMES = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "bpchar": "character",
    "varchar": "character varying",
    "timestamptz": "timestamp with time zone",
}


@dataclass
class Column:
    name: str
    type: str  # e.g. "uuid", "text", "character varying(20)"
    not_null: bool = False
    default: str | None = None  # the default expression as SQL
    default_text: str | None = None  # the string constant of a default like 'primary'

    def describe(self) -> str:
        text = self.type.upper() if self.type in ("text", "uuid") else self.type
        if self.not_null:
            text += " NOT NULL"
        if self.default_text is not None:
            text += f" DEFAULT '{self.default_text}'"
        elif self.default is not None:
            text += f" DEFAULT {self.default}"
        return text


@dataclass
class Policy:
    name: str
    command: str  # all, select, insert, update, delete
    using: str | None
    check: str | None
    columns: frozenset[str]  # columns the USING / WITH CHECK expressions refer to


@dataclass
class Table:
    schema: str
    name: str
    where: str  # the migration that created it
    columns: dict[str, Column] = field(default_factory=dict)
    rls: bool = False
    force_rls: bool = False
    policies: list[Policy] = field(default_factory=list)
    kind: str = "table"  # or "view", "materialized view" (Hasura tracks those too)
    # The tables a view (or a table made AS SELECT) reads its rows from, through views too.
    reads: frozenset[tuple[str, str]] = frozenset()

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Source:
    """The SQL of one migration and what messages call it."""

    where: str
    sql: str


@dataclass
class Schema:
    tables: dict[tuple[str, str], Table] = field(default_factory=dict)
    # (where, why) for migrations not read (the parser refused them, nested too deeply):
    # their tables are not known.
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def table(self, schema: str, name: str) -> Table | None:
        return self.tables.get((schema, name))

    def with_column(self, column: str, kinds: tuple[str, ...] = ()) -> list[Table]:
        """Tables (and views) with ``column``; only those of ``kinds`` when given."""
        return [
            t
            for _k, t in sorted(self.tables.items())
            if column in t.columns and (not kinds or t.kind in kinds)
        ]

    @property
    def uses_rls(self) -> bool:
        return any(t.rls or t.policies for t in self.tables.values())


def project_sources(project: Path) -> list[Source]:
    """``migrations/<version>_<name>/up.sql`` in version order (misnamed folders are the
    database plugin's to report)."""
    root = project / "migrations"
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        match = FOLDER.match(folder.name)
        up = folder / "up.sql"
        if match and up.is_file():
            try:
                text = up.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            found.append(
                (int(match.group(1)), folder.name, Source(f"migrations/{folder.name}/up.sql", text))
            )
    return [source for _v, _n, source in sorted(found, key=lambda x: (x[0], x[1]))]


def plugin_sources(migrations: Iterable[Any]) -> list[Source]:
    """The migrations plugins contribute (``Migration`` objects), by plugin and version."""
    items = sorted(migrations, key=lambda m: (m.source, _version_key(m.version)))
    return [Source(f"plugin {m.source} migration {m.version}_{m.name}", m.up_sql) for m in items]


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (1 << 62, version)


def read(sources: Iterable[Source]) -> Schema:
    """Replay ``sources`` in order into the tables they leave behind."""
    from pglast import parse_sql
    from pglast.parser import ParseError

    schema = Schema()
    state = _State(schema)
    for source in sources:
        try:
            statements = parse_sql(source.sql)
        except RecursionError:
            schema.unreadable.append((source.where, "nested too deeply to read"))
            continue
        except ParseError as exc:
            # args: (message, byte offset of the error in the text)
            offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else -1
            line = source.sql.encode()[:offset].count(b"\n") + 1
            at = f":{line}" if offset >= 0 else ""
            why = f"PostgreSQL's parser refuses it ({exc.args[0]})"
            schema.unreadable.append((f"{source.where}{at}", why))
            continue
        for raw in statements:
            try:
                state.apply(raw.stmt, source.where)
            except RecursionError:  # a statement nested deeper than Python's stack
                schema.unreadable.append((source.where, "nested too deeply to read"))
    return schema


class _State:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.search_path = "public"

    def key(self, relation: Any) -> tuple[str, str]:
        return (relation.schemaname or self.search_path, relation.relname)

    def apply(self, stmt: Any, where: str) -> None:
        from pglast import ast

        handler = {
            ast.CreateStmt: self.create,
            ast.ViewStmt: self.create_view,
            ast.CreateTableAsStmt: self.create_as,
            ast.AlterTableStmt: self.alter,
            ast.RenameStmt: self.rename,
            ast.AlterObjectSchemaStmt: self.set_schema,
            ast.DropStmt: self.drop,
            ast.CreatePolicyStmt: self.create_policy,
            ast.VariableSetStmt: self.set_variable,
        }.get(type(stmt))
        if handler is not None:
            handler(stmt, where)

    # -- statements ------------------------------------------------------------------------
    def create(self, stmt: Any, where: str) -> None:
        from pglast import ast, enums

        key = self.key(stmt.relation)
        if key in self.schema.tables:
            return  # IF NOT EXISTS (or an error PostgreSQL would raise)
        table = Table(key[0], key[1], where)
        for parent in stmt.inhRelations or ():  # PARTITION OF / INHERITS
            source = self.schema.tables.get(self.key(parent))
            if source is not None:
                table.columns.update({n: _copy(c) for n, c in source.columns.items()})
        for element in stmt.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                table.columns[str(element.colname)] = _column(element)
            elif isinstance(element, ast.TableLikeClause):
                source = self.schema.tables.get(self.key(element.relation))
                if source is not None:
                    table.columns.update({n: _copy(c) for n, c in source.columns.items()})
            elif (
                isinstance(element, ast.Constraint)
                and element.contype == enums.ConstrType.CONSTR_PRIMARY
            ):
                for name in _names(element.keys):
                    if name in table.columns:
                        table.columns[name].not_null = True
        self.schema.tables[key] = table

    def create_view(self, stmt: Any, where: str) -> None:
        self._derived(stmt.view, stmt.query, _names(stmt.aliases), "view", where, stmt.replace)

    def create_as(self, stmt: Any, where: str) -> None:
        from pglast import enums

        kind = "materialized view" if stmt.objtype == enums.ObjectType.OBJECT_MATVIEW else "table"
        into = stmt.into
        self._derived(into.rel, stmt.query, _names(into.colNames), kind, where, False)

    def _derived(
        self, relation: Any, query: Any, aliases: list[str], kind: str, where: str, replace: bool
    ) -> None:
        """A view, or a table or materialized view made from a query: the columns the
        query yields (renamed by the column list), the tables it reads."""
        key = self.key(relation)
        if key in self.schema.tables and not replace:
            return
        columns, reads = self.query_columns(query, {})
        for index, alias in enumerate(aliases[: len(columns)]):
            columns[index].name = alias
        table = Table(key[0], key[1], where, kind=kind, reads=frozenset(reads))
        for column in columns:
            if kind != "view":  # PostgreSQL copies neither NOT NULL nor defaults
                column.not_null, column.default, column.default_text = False, None, None
            table.columns.setdefault(column.name, column)
        self.schema.tables[key] = table

    def query_columns(
        self, query: Any, ctes: dict[str, tuple[list[Column], set[tuple[str, str]]]]
    ) -> tuple[list[Column], set[tuple[str, str]]]:
        """The columns a SELECT yields as PostgreSQL names them, and the tables it reads.
        What cannot be known here (a function's columns) is left out, never guessed."""
        from pglast import ast, enums

        if not isinstance(query, ast.SelectStmt):
            return [], set()
        ctes = dict(ctes)
        for cte in (query.withClause.ctes or ()) if query.withClause else ():
            ctes[str(cte.ctename)] = self.query_columns(cte.ctequery, ctes)
        if query.op != enums.SetOperation.SETOP_NONE:  # UNION ...: the first query's names
            left, first = self.query_columns(query.larg, ctes)
            return left, first | self.query_columns(query.rarg, ctes)[1]
        sources: list[tuple[str, list[Column]]] = []
        reads: set[tuple[str, str]] = set()
        for item in query.fromClause or ():
            self._from(item, ctes, sources, reads)
        out: list[Column] = []
        for target in query.targetList or ():
            value = target.val
            fields = tuple(value.fields or ()) if isinstance(value, ast.ColumnRef) else ()
            if fields and isinstance(fields[-1], ast.A_Star):
                qualifier = _names(fields[:-1])
                for alias, columns in sources:
                    if not qualifier or alias == qualifier[-1]:
                        out += [_copy(c) for c in columns]
                continue
            column = _target(value, sources)
            if target.name:
                column.name = str(target.name)
            out.append(column)
        return out, reads

    def _from(
        self,
        item: Any,
        ctes: dict[str, tuple[list[Column], set[tuple[str, str]]]],
        sources: list[tuple[str, list[Column]]],
        reads: set[tuple[str, str]],
    ) -> None:
        from pglast import ast

        columns: list[Column] = []
        if isinstance(item, ast.JoinExpr):
            self._from(item.larg, ctes, sources, reads)
            self._from(item.rarg, ctes, sources, reads)
            return
        if isinstance(item, ast.RangeVar):
            name = str(item.relname)
            if not item.schemaname and name in ctes:
                found, more = ctes[name]
                columns = [_copy(c) for c in found]
                reads |= more
            else:
                key = self.key(item)
                table = self.schema.tables.get(key)
                if table is not None:
                    columns = [_copy(c) for c in table.columns.values()]
                    reads |= set(table.reads) if table.kind == "view" else {key}
        elif isinstance(item, ast.RangeSubselect):
            found, more = self.query_columns(item.subquery, ctes)
            columns = found
            reads |= more
            name = ""
        else:  # a function in FROM: its columns are unknown here
            return
        alias = item.alias
        if alias is not None:
            name = str(alias.aliasname)
            for index, renamed in enumerate(_names(alias.colnames)[: len(columns)]):
                columns[index].name = renamed
        sources.append((name, columns))

    def alter(self, stmt: Any, where: str) -> None:
        from pglast import ast, enums

        if stmt.objtype != enums.ObjectType.OBJECT_TABLE:
            return
        table = self.schema.tables.get(self.key(stmt.relation))
        if table is None:
            return
        kind = enums.AlterTableType
        for cmd in stmt.cmds or ():
            column = table.columns.get(cmd.name) if cmd.name else None
            if cmd.subtype == kind.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
                table.columns.setdefault(str(cmd.def_.colname), _column(cmd.def_))
            elif cmd.subtype == kind.AT_DropColumn:
                table.columns.pop(cmd.name, None)
            elif cmd.subtype == kind.AT_AlterColumnType and column is not None:
                column.type = _type(cmd.def_.typeName)
            elif cmd.subtype == kind.AT_ColumnDefault and column is not None:
                column.default, column.default_text = _default(cmd.def_)
            elif cmd.subtype == kind.AT_SetNotNull and column is not None:
                column.not_null = True
            elif cmd.subtype == kind.AT_DropNotNull and column is not None:
                column.not_null = False
            elif cmd.subtype == kind.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
                if cmd.def_.contype == enums.ConstrType.CONSTR_PRIMARY:
                    for name in _names(cmd.def_.keys):
                        if name in table.columns:
                            table.columns[name].not_null = True
            elif cmd.subtype == kind.AT_EnableRowSecurity:
                table.rls = True
            elif cmd.subtype == kind.AT_DisableRowSecurity:
                table.rls = False
            elif cmd.subtype == kind.AT_ForceRowSecurity:
                table.force_rls = True
            elif cmd.subtype == kind.AT_NoForceRowSecurity:
                table.force_rls = False

    def rename(self, stmt: Any, where: str) -> None:
        from pglast import enums

        if stmt.relation is None:
            return
        key = self.key(stmt.relation)
        table = self.schema.tables.get(key)
        if table is None:
            return
        kind = enums.ObjectType
        if stmt.renameType in (kind.OBJECT_TABLE, kind.OBJECT_VIEW, kind.OBJECT_MATVIEW):
            del self.schema.tables[key]
            table.name = stmt.newname
            self.schema.tables[(table.schema, table.name)] = table
        elif stmt.renameType == kind.OBJECT_COLUMN and stmt.subname in table.columns:
            column = table.columns.pop(stmt.subname)
            column.name = stmt.newname
            table.columns[stmt.newname] = column
        elif stmt.renameType == kind.OBJECT_POLICY:
            for policy in table.policies:
                if policy.name == stmt.subname:
                    policy.name = stmt.newname

    def set_schema(self, stmt: Any, where: str) -> None:
        from pglast import enums

        kind = enums.ObjectType
        if stmt.relation is None or stmt.objectType not in (
            kind.OBJECT_TABLE,
            kind.OBJECT_VIEW,
            kind.OBJECT_MATVIEW,
        ):
            return
        table = self.schema.tables.pop(self.key(stmt.relation), None)
        if table is not None:
            table.schema = stmt.newschema
            self.schema.tables[(table.schema, table.name)] = table

    def drop(self, stmt: Any, where: str) -> None:
        from pglast import enums

        kind = enums.ObjectType
        for obj in stmt.objects or ():
            names = _names(obj)
            if stmt.removeType in (kind.OBJECT_TABLE, kind.OBJECT_VIEW, kind.OBJECT_MATVIEW):
                key = (names[0], names[1]) if len(names) > 1 else (self.search_path, names[0])
                self.schema.tables.pop(key, None)
            elif stmt.removeType == kind.OBJECT_POLICY and len(names) >= 2:
                *relation, policy = names
                key = (
                    (relation[0], relation[1])
                    if len(relation) > 1
                    else (self.search_path, relation[0])
                )
                table = self.schema.tables.get(key)
                if table is not None:
                    table.policies = [p for p in table.policies if p.name != policy]

    def create_policy(self, stmt: Any, where: str) -> None:
        table = self.schema.tables.get(self.key(stmt.table))
        if table is None:
            return
        table.policies.append(
            Policy(
                stmt.policy_name,
                stmt.cmd_name or "all",
                _sql(stmt.qual),
                _sql(stmt.with_check),
                frozenset(_column_refs(stmt.qual) | _column_refs(stmt.with_check)),
            )
        )

    def set_variable(self, stmt: Any, where: str) -> None:
        """Where the next unqualified names go: the first schema of the path ("$user" is
        a schema only where one has the role's name; DEFAULT and RESET: public)."""
        if (stmt.name or "").lower() != "search_path":
            return
        values = [getattr(getattr(arg, "val", None), "sval", None) for arg in stmt.args or ()]
        named = [v for v in values if isinstance(v, str) and v and v != "$user"]
        self.search_path = named[0] if named else "public"


# -- pieces of the tree ------------------------------------------------------------------------
def _names(nodes: Any) -> list[str]:
    return [getattr(n, "sval", "") for n in nodes or ()]


def _type(type_name: Any) -> str:
    names = [n for n in _names(type_name.names) if n != "pg_catalog"]
    base = TYPE_NAMES.get(names[-1], names[-1]) if names else "?"
    mods = []
    for mod in type_name.typmods or ():
        value = getattr(getattr(mod, "val", None), "ival", None)
        if value is not None:
            mods.append(str(value))
    if mods:
        base += f"({','.join(mods)})"
    if type_name.arrayBounds:
        base += "[]"
    return base


def _sql(node: Any) -> str | None:
    if node is None:
        return None
    from pglast.stream import RawStream

    return str(RawStream()(node))


def _default(expr: Any) -> tuple[str | None, str | None]:
    """The default as SQL, and its text when it is a string constant (``'x'``, ``'x'::text``)."""
    if expr is None:
        return None, None
    from pglast import ast

    inner = expr.arg if isinstance(expr, ast.TypeCast) else expr
    text = None
    if isinstance(inner, ast.A_Const) and not inner.isnull:
        text = getattr(inner.val, "sval", None)
    return _sql(expr), text


def _column(definition: Any) -> Any:
    from pglast import enums

    column = Column(str(definition.colname), _type(definition.typeName))
    for constraint in definition.constraints or ():
        if constraint.contype in (enums.ConstrType.CONSTR_NOTNULL, enums.ConstrType.CONSTR_PRIMARY):
            column.not_null = True
        elif constraint.contype == enums.ConstrType.CONSTR_NULL:
            column.not_null = False
        elif constraint.contype == enums.ConstrType.CONSTR_DEFAULT:
            column.default, column.default_text = _default(constraint.raw_expr)
    return column


def _target(value: Any, sources: list[tuple[str, list[Column]]]) -> Column:
    """One output column of a SELECT list, named as PostgreSQL names it (a cast keeps the
    column's name), with the source column's definition where it is a plain reference."""
    from pglast import ast

    if isinstance(value, ast.TypeCast):
        column = _target(value.arg, sources)
        column.type = _type(value.typeName)
        return column
    if isinstance(value, ast.ColumnRef):
        fields = _names(value.fields)
        for alias, columns in sources:
            if len(fields) == 1 or alias == fields[-2]:
                match = next((c for c in columns if c.name == fields[-1]), None)
                if match is not None:
                    return _copy(match)
        return Column(fields[-1], "?")
    if isinstance(value, ast.FuncCall):
        return Column(_names(value.funcname)[-1], "?")
    return Column("?column?", "?")


def _copy(column: Column) -> Column:
    return Column(column.name, column.type, column.not_null, column.default, column.default_text)


def _column_refs(node: Any) -> set[str]:
    """Every column name an expression refers to (the last part of each reference)."""
    if node is None:
        return set()
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("@") == "ColumnRef":
                fields = [f.get("sval") for f in value.get("fields", ()) if isinstance(f, dict)]
                if fields and isinstance(fields[-1], str):
                    found.add(fields[-1])
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(node(skip_none=True))
    return found
