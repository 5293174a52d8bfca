"""Running migrations against one database: status, up, down, repair and the audit log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nself_sdk import NselfError, Problem, UsageError

from ..transport import Transport
from .files import PROJECT, Item, ordered, split_statements
from .history import (
    Applied,
    History,
    MigrationsBlocked,
    check,
    connect,
    locked,
    reset_session,
    who,
)
from .repair import apply_repair, check_completed, plan_repairs
from .sqltext import transaction_problems

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass
class Outcome:
    applied: list[Item] = field(default_factory=list)
    reverted: list[Item] = field(default_factory=list)


class Runner:
    """Runs migrations against one database reached through a ``Transport``."""

    def __init__(
        self,
        transport: Transport,
        items: list[Item],
        lock_timeout: float = 60.0,
        say: Say = _quiet,
        secret: Callable[[str], str] | None = None,
    ) -> None:
        self.transport = transport
        self.items = ordered(items)
        self.lock_timeout = lock_timeout
        self.say = say
        self.who = who()
        # The project's secrets, for the passwords of the plugins' own database roles.
        self.secret = secret or (lambda _name: "")
        self._confined: dict[str, History] = {}

    @contextmanager
    def _history(self, lock: bool = True) -> Iterator[History]:
        """The history of the database, under the migration lock (tables created)."""
        with connect(self.transport) as conn:
            if not lock:
                yield History(conn, self.who)
                return
            with locked(conn, self.lock_timeout):
                history = History(conn, self.who)
                history.ensure_tables()
                for source, version, name in history.settle_started():
                    label = version + "_" + name + ("" if source == PROJECT else f" ({source})")
                    self.say(f"logged {label} as interrupted: its run stopped before it finished")
                try:
                    yield history
                finally:
                    for confined in self._confined.values():
                        confined.conn.close()
                    self._confined.clear()

    def _as(self, history: History, item: Item) -> History:
        """Where ``item`` runs: the runner's own history, or, for a bundle's migration, a
        connection as the bundle's role (provisioned first, once per run)."""
        role = item.role
        if role is None:
            return history
        if role.name not in self._confined:
            from .confine import ConfinedHistory, connect_as, provision

            password = self.secret(role.password_setting)
            provision(history, role, item.source, password)
            conn = connect_as(self.transport, role, item.source, password)
            self._confined[role.name] = ConfinedHistory(conn, self.who)
        return self._confined[role.name]

    def _checked(self, history: History) -> list[Applied]:
        applied = history.applied()
        problems = check(self.items, applied)
        if problems:
            raise MigrationsBlocked(problems)
        return applied

    # -- read-only views ------------------------------------------------------------------
    def status(self) -> tuple[list[dict[str, Any]], list[Problem]]:
        """Every migration with its state (applied, pending, changed, interrupted, missing),
        and what disagrees with the history."""
        with self._history(lock=False) as history:
            applied = history.applied()
        problems = check(self.items, applied)
        by_key = {a.key: a for a in applied}
        rows: list[dict[str, Any]] = []
        for item in self.items:
            row = by_key.get(item.key)
            if row is None:
                state = "pending"
            elif row.state == "running":
                state = "interrupted"
            else:
                state = "applied" if row.sha256 == item.sha256 else "changed"
            rows.append(
                {
                    "source": item.source,
                    "version": item.version,
                    "name": item.name,
                    "state": state,
                    "applied_at": row.applied_at.isoformat() if row else None,
                    "applied_by": row.applied_by if row else None,
                    "transactional": item.transactional,
                }
            )
        known = {i.key for i in self.items}
        for row in applied:
            if row.key not in known:
                rows.append(
                    {
                        "source": row.source,
                        "version": row.version,
                        "name": row.name,
                        "state": "missing",
                        "applied_at": row.applied_at.isoformat(),
                        "applied_by": row.applied_by,
                        "transactional": row.transactional,
                    }
                )
        return rows, problems

    def pending(self, to: str | None = None) -> list[Item]:
        with self._history(lock=False) as history:
            applied = self._checked(history)
        return _readable(self._select_pending(applied, to))

    def _select_pending(self, applied: list[Applied], to: str | None) -> list[Item]:
        done = {a.key for a in applied}
        todo = [i for i in self.items if i.key not in done]
        if to is not None:
            matching = [i for i in self.items if i.version == to or i.label == to]
            if not matching:
                raise UsageError(f"no migration has version {to}", "see `nself db migrate status`")
            stop = self.items.index(matching[0])
            todo = [i for i in todo if self.items.index(i) <= stop]
        return todo

    def log(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._history(lock=False) as history:
            return history.audit_log(limit)

    # -- up -----------------------------------------------------------------------------
    def up(self, to: str | None = None) -> Outcome:
        outcome = Outcome()
        with self._history() as history:
            todo = self._select_pending(self._checked(history), to)  # read under the lock
            _readable(todo)  # every file parsed before the first one runs
            for n, item in enumerate(todo, start=1):
                self._apply(history, item, durable=n == len(todo))
                outcome.applied.append(item)
        return outcome

    def _apply(self, history: History, item: Item, durable: bool = True) -> None:
        """Run one migration and record it, atomically when it is transactional.

        All but the last migration of a run commit without waiting for the WAL flush
        (``synchronous_commit = off``): a crash can then only lose whole migrations
        together with their history rows, never half of one, and the last, durable commit
        flushes every earlier one. It makes long runs several times faster.
        """
        psycopg = _psycopg()
        history = self._as(history, item)
        self.say(f"applying {item.label}" + ("" if item.transactional else " (no transaction)"))
        history.started(item)  # a start without an outcome: an interrupted apply
        try:
            if item.transactional:
                _apply_in_transaction(history, item, durable)
            else:
                _apply_statements(history, item)
        except psycopg.Error as exc:
            hint = (
                "the migration was rolled back: nothing of it was applied; fix the file and rerun"
                if item.transactional
                else "it ran without a transaction and is recorded as interrupted: check the "
                "database, then `nself db migrate repair --interrupted applied|pending --yes`"
            )
            message = _pg_message(exc)
            _log_failure(history, item, message)
            raise NselfError(f"{item.where} failed: {message}", hint) from None
        finally:
            reset_session(history.conn)

    # -- down ---------------------------------------------------------------------------
    def down(self, steps: int = 1) -> Outcome:
        if steps < 1:
            raise UsageError("--steps must be at least 1")
        outcome = Outcome()
        by_key = {i.key: i for i in self.items}
        with self._history() as history:
            targets = [by_key[a.key] for a in reversed(self._checked(history))][:steps]
            for item in targets:
                if not (item.down_sql or "").strip():
                    raise NselfError(
                        f"{item.where}: there is no down.sql, so it cannot be reverted",
                        "write the down.sql, or restore a backup instead",
                    )
            _revertible(targets)  # every down.sql parsed before the first one runs
            for item in targets:
                self._revert(history, item)
                outcome.reverted.append(item)
        return outcome

    def _revert(self, history: History, item: Item) -> None:
        history = self._as(history, item)
        self.say(f"reverting {item.label}")
        psycopg = _psycopg()
        conn = history.conn
        try:
            with conn.transaction():
                conn.execute((item.down_sql or "").encode("utf-8"))
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
                    raise NselfError(
                        f"{_down_where(item)} ended its transaction itself",
                        "remove BEGIN/COMMIT from it: nself reverts each migration in one"
                        " transaction",
                    )
                history.forget(item.source, item.version)
                history.audit("revert", item.source, item.version, item.name, item.sha256)
        except psycopg.Error as exc:
            raise NselfError(
                f"down.sql of {item.where} failed: {_pg_message(exc)}",
                "it was rolled back; the migration is still applied",
            ) from None
        finally:
            reset_session(conn)

    # -- repair -------------------------------------------------------------------------
    def repair(
        self,
        apply: bool,
        interrupted: str | None = None,
        reason: str = "",
        only: str | None = None,
    ) -> list[str]:
        """Realign the history with the files (``only``: one migration); returns what it
        did (or would do). Marking an interrupted migration applied checks its effects
        first (``check_completed``), in a dry run too."""
        with self._history() as history:
            repairs = plan_repairs(self.items, history.applied(), interrupted, only)
            for repair in repairs:
                if apply:
                    apply_repair(history, repair, reason)
                else:
                    check_completed(history, repair, reason)
        return [repair.text for repair in repairs]


def _apply_in_transaction(history: History, item: Item, durable: bool) -> None:
    conn = history.conn
    started = time.monotonic()
    with conn.transaction():
        if not durable:
            conn.execute("SET LOCAL synchronous_commit = off")
        conn.execute(item.up_sql.encode("utf-8"))
        if conn.info.transaction_status != _psycopg().pq.TransactionStatus.INTRANS:
            raise NselfError(
                f"{item.where} ended the migration's transaction itself",
                "remove BEGIN/COMMIT from the file: nself wraps each migration "
                "in a transaction (or opt out with `-- nself:no-transaction`)",
            )
        history.record(item, "applied", _ms_since(started))
        history.audit("apply", item.source, item.version, item.name, item.sha256)


def _apply_statements(history: History, item: Item) -> None:
    """A ``-- nself:no-transaction`` migration: recorded as running first, so a run cut
    short is found by the next one; each statement runs on its own."""
    conn = history.conn
    started = time.monotonic()
    history.record(item, "running", None)
    for statement in split_statements(item.up_sql, item.where):
        conn.execute(statement.encode("utf-8"))
    elapsed = _ms_since(started)
    with conn.transaction():
        history.finished(item, elapsed)
        history.audit("apply", item.source, item.version, item.name, item.sha256)


def _log_failure(history: History, item: Item, message: str) -> None:
    """``apply-failed`` in the audit log, after the migration's own rollback."""
    conn = history.conn
    try:
        if conn.info.transaction_status != _psycopg().pq.TransactionStatus.IDLE:
            conn.rollback()
        history.audit("apply-failed", item.source, item.version, item.name, item.sha256, message)
    except _psycopg().Error:  # the connection is gone: the next run logs it as interrupted
        pass


def _readable(todo: list[Item]) -> list[Item]:
    """Refuse, before anything runs, a pending file PostgreSQL's parser cannot read or a
    transactional one that ends its own transaction (COMMIT, ROLLBACK, BEGIN, END...)."""
    problems: list[Problem] = []
    for item in todo:
        try:
            if item.transactional:
                problems += transaction_problems(item.up_sql, item.where)
            else:
                split_statements(item.up_sql, item.where)
        except NselfError as exc:
            problems.append(Problem("error", exc.message, exc.hint))
    if problems:
        raise MigrationsBlocked(problems)
    return todo


def _revertible(targets: list[Item]) -> None:
    """Refuse, before anything is reverted, a down.sql PostgreSQL's parser cannot read or
    that ends its own transaction: it always runs in one, and a COMMIT inside would keep
    its first half while the migration stays recorded as applied."""
    problems: list[Problem] = []
    for item in targets:
        where = _down_where(item)
        try:
            problems += transaction_problems(
                item.down_sql or "", where, "down.sql", "remove it; nothing was reverted"
            )
        except NselfError as exc:
            problems.append(Problem("error", exc.message, exc.hint))
    if problems:
        raise MigrationsBlocked(problems)


def _down_where(item: Item) -> str:
    if item.where.endswith("/up.sql"):
        return item.where[: -len("up.sql")] + "down.sql"
    return f"down.sql of {item.where}"


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _psycopg() -> Any:
    import psycopg

    return psycopg


def _pg_message(exc: Exception) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(exc).strip().splitlines()[0]
    position = getattr(diag, "statement_position", None)
    return f"{primary} (at character {position})" if position else str(primary)
