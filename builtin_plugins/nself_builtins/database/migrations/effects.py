"""Whether a statement's lasting effect is in the database: what ``migrate repair
--interrupted applied`` checks before it believes an interrupted migration completed.

``effect_present`` answers True (there), False (missing: it did not complete) or None (this
kind of statement cannot be checked; the user must then give a reason)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .sqltext import Statement

if TYPE_CHECKING:
    import psycopg

# Statements that leave nothing to find afterwards (maintenance): nothing to check.
NOTHING_LASTING = {"VacuumStmt", "ReindexStmt", "ClusterStmt", "RefreshMatViewStmt"}
DROPPABLE_RELATIONS = {
    "OBJECT_TABLE",
    "OBJECT_INDEX",
    "OBJECT_VIEW",
    "OBJECT_MATVIEW",
    "OBJECT_SEQUENCE",
}


def _relation(node: dict[str, Any] | None) -> tuple[str | None, str] | None:
    if not node or "relname" not in node:
        return None
    return node.get("schemaname"), str(node["relname"])


def _names(node: dict[str, Any]) -> list[str]:
    items = node.get("List", {}).get("items", []) if "List" in node else [node]
    return [str(i["String"]["sval"]) for i in items if "String" in i]


def _target(statement: Statement) -> tuple[str, Any] | None:
    """(what kind of object, its name) a statement creates or drops."""
    kind, node = statement.kind, statement.node
    if kind == "IndexStmt" and node.get("idxname"):
        rel = _relation(node.get("relation"))
        return ("index", ((rel[0] if rel else None), str(node["idxname"])))
    if kind == "CreateStmt":
        return ("relation", _relation(node.get("relation")))
    if kind == "ViewStmt":
        return ("relation", _relation(node.get("view")))
    if kind == "CreateTableAsStmt":
        return ("relation", _relation((node.get("into") or {}).get("rel")))
    if kind == "CreateSeqStmt":
        return ("relation", _relation(node.get("sequence")))
    if kind == "CreateSchemaStmt" and node.get("schemaname"):
        return ("schema", str(node["schemaname"]))
    if kind == "CreateExtensionStmt":
        return ("extension", str(node["extname"]))
    if kind == "AlterEnumStmt" and node.get("newVal"):
        names = [str(n["String"]["sval"]) for n in node.get("typeName", []) if "String" in n]
        return ("enum value", (names, str(node["newVal"])))
    if kind == "DropStmt" and node.get("removeType") in DROPPABLE_RELATIONS:
        objects = [_names(o) for o in node.get("objects", [])]
        return ("dropped", objects)
    return None


def describe(statement: Statement) -> str:
    found = _target(statement)
    if found is None:
        return statement.kind
    what, name = found
    if what in ("index", "relation") and isinstance(name, tuple):
        return f"{what} {'.'.join(x for x in name if x)}"
    if what == "dropped":
        return "the absence of " + ", ".join(".".join(n) for n in name)
    if what == "enum value":
        return f"enum value {name[1]!r} of {'.'.join(name[0])}"
    return f"{what} {name}"


def _regclass(conn: psycopg.Connection[Any], schema: str | None, name: str) -> Any:
    if schema:
        row = conn.execute("SELECT to_regclass(format('%%I.%%I', %s, %s))", (schema, name))
    else:
        row = conn.execute("SELECT to_regclass(quote_ident(%s))", (name,))
    found = row.fetchone()
    return found[0] if found else None


def effect_present(conn: psycopg.Connection[Any], statement: Statement) -> bool | None:
    if statement.kind in NOTHING_LASTING:
        return True
    found = _target(statement)
    if found is None or found[1] is None:
        return None
    what, name = found
    if what == "index":
        oid = _regclass(conn, name[0], name[1])
        if oid is None:
            return False
        row = conn.execute(
            "SELECT indisvalid AND indisready FROM pg_index WHERE indexrelid = %s::regclass",
            (str(oid),),
        ).fetchone()
        return bool(row and row[0])
    if what == "relation":
        return _regclass(conn, name[0], name[1]) is not None
    if what == "schema":
        row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone()
        return row is not None
    if what == "extension":
        row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (name,)).fetchone()
        return row is not None
    if what == "enum value":
        names, value = name
        row = conn.execute(
            "SELECT 1 FROM pg_enum WHERE enumtypid = to_regtype(%s) AND enumlabel = %s",
            (".".join(names), value),
        ).fetchone()
        return row is not None
    if what == "dropped":
        for parts in name:
            schema, rel = (parts[-2], parts[-1]) if len(parts) > 1 else (None, parts[-1])
            if _regclass(conn, schema, rel) is not None:
                return False
        return True
    return None
