"""Migration SQL read by PostgreSQL's own parser (``pglast``, libpg_query): statements,
transaction control and the ``-- nself:no-transaction`` marker. Comments and string
literals (quoted, dollar-quoted, function bodies) are never mistaken for statements."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from nself_sdk import NselfError, Problem

MARKER = re.compile(r"^--\s*nself:\s*no-transaction\b", re.IGNORECASE)
# Statements that begin or end a transaction; SAVEPOINT, RELEASE and ROLLBACK TO stay
# inside the migration's own transaction.
ENDS_TRANSACTION = {
    "TRANS_STMT_BEGIN": "BEGIN",
    "TRANS_STMT_START": "START TRANSACTION",
    "TRANS_STMT_COMMIT": "COMMIT",
    "TRANS_STMT_ROLLBACK": "ROLLBACK",
    "TRANS_STMT_PREPARE": "PREPARE TRANSACTION",
    "TRANS_STMT_COMMIT_PREPARED": "COMMIT PREPARED",
    "TRANS_STMT_ROLLBACK_PREPARED": "ROLLBACK PREPARED",
}


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # where it starts in the file (1-based)
    kind: str  # the parse node, e.g. CreateStmt, IndexStmt, TransactionStmt
    node: dict[str, Any]
    ends_transaction: str | None  # BEGIN, COMMIT, ... or None


def _parser() -> Any:
    from pglast import parser

    return parser


def statements(sql: str, where: str) -> list[Statement]:
    """The top-level statements of ``sql``; a file the parser cannot read is an error
    naming ``where`` and the line."""
    parser = _parser()
    data = sql.encode("utf-8")  # the parser's locations count bytes
    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except parser.ParseError as exc:
        # args: (message, cursor position, 1-based, in characters)
        message = str(exc.args[0]) if exc.args else str(exc)
        position = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 1
        line = sql[: max(0, position - 1)].count("\n") + 1
        raise NselfError(
            f"{where}:{line}: PostgreSQL's parser cannot read it: {message}",
            "fix the SQL; nothing was applied",
        ) from None
    out = []
    for entry in tree.get("stmts", []):
        start = int(entry.get("stmt_location", 0))
        length = int(entry.get("stmt_len", 0)) or len(data) - start
        node = entry["stmt"]
        kind = next(iter(node))
        ends = None
        if kind == "TransactionStmt":
            ends = ENDS_TRANSACTION.get(str(node[kind].get("kind", "")))
        text = data[start : start + length].decode("utf-8")
        line = data[:start].count(b"\n") + 1 + _leading_lines(text)
        out.append(Statement(text.strip(), line, kind, node[kind], ends))
    return out


def _leading_lines(text: str) -> int:
    return text[: len(text) - len(text.lstrip())].count("\n")


def marked_no_transaction(sql: str) -> bool:
    """Whether a real comment (not text in a string) says ``-- nself:no-transaction``."""
    return marked(sql, MARKER)


def marked(sql: str, marker: re.Pattern[str]) -> bool:
    """Whether a real ``--`` comment (not text in a string) matches ``marker``."""
    parser = _parser()
    data = sql.encode("utf-8")
    try:
        tokens = parser.scan(sql)
    except parser.ParseError:
        return False  # the parse reports it, with its line
    for token in tokens:
        if token.name == "SQL_COMMENT":
            text = data[token.start : token.end + 1].decode("utf-8", "replace")
            if marker.match(text):
                return True
    return False


NO_TRANSACTION_HINT = (
    "remove it, or put `-- nself:no-transaction` on a line of its own to run the"
    " statements one by one without a transaction"
)


def transaction_problems(
    sql: str, where: str, what: str = "migration", hint: str = NO_TRANSACTION_HINT
) -> list[Problem]:
    """Statements of a file nself runs in one transaction (a transactional migration, a
    down.sql, a seed) that would end that transaction."""
    return [
        Problem(
            "error",
            f"{where}:{s.line}: {s.ends_transaction} inside a {what}: nself runs each"
            f" {what} in one transaction, which this would end (half of the file applied,"
            " the other half not)",
            hint,
        )
        for s in statements(sql, where)
        if s.ends_transaction
    ]
