"""Seed data (`seeds/*.sql`) and the dev-only reset."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nself_sdk import NselfError

from .transport import Transport

if TYPE_CHECKING:
    from .target import Target

PROD_SAFE = re.compile(r"^--\s*nself:\s*prod-safe\b", re.IGNORECASE)


def seed_files(project: Path, env: str) -> list[Path]:
    folder = project / "seeds"
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.glob("*.sql") if p.is_file())
    if env == "prod":  # the marker counts as a real comment only, not text in a string
        from .migrations.sqltext import marked

        files = [p for p in files if marked(p.read_text(encoding="utf-8"), PROD_SAFE)]
    return files


def run_seeds(target: Target, dry_run: bool, say: Callable[[str], None]) -> list[Path]:
    """Each seed file runs in its own transaction, in name order."""
    import psycopg

    files = seed_files(target.project, target.env)
    if target.env == "prod":
        say("  production: only seed files marked `-- nself:prod-safe` run")
    if dry_run:
        for path in files:
            say(f"  would run {path.relative_to(target.project)}")
        return files
    if not files:
        return []
    _readable(target.project, files)
    with target.transport().connect(autocommit=True) as conn:
        for path in files:
            rel = path.relative_to(target.project)
            say(f"  seeding {rel}")
            try:
                with conn.transaction():
                    conn.execute(path.read_bytes())
            except psycopg.Error as exc:
                first = str(exc).strip().splitlines()[0]
                raise NselfError(
                    f"{rel} failed: {first}", "it was rolled back; earlier seed files stay applied"
                ) from None
    return files


def _readable(project: Path, files: list[Path]) -> None:
    """Every seed file read by PostgreSQL's parser before the first one runs: one that ends
    its own transaction (COMMIT, ROLLBACK, BEGIN, END...) would keep half of itself while
    nself says it was rolled back, so it is refused, as is one the parser cannot read."""
    from nself_sdk import Problem

    from .migrations.sqltext import transaction_problems

    problems: list[Problem] = []
    for path in files:
        where = str(path.relative_to(project))
        try:
            problems += transaction_problems(
                path.read_text(encoding="utf-8"), where, "seed file", "remove it; nothing was run"
            )
        except NselfError as exc:
            problems.append(Problem("error", exc.message, exc.hint))
    if problems:
        raise NselfError(problems[0].message, problems[0].hint)


def reset(transport: Transport, init_dir: Path | None = None) -> None:
    """Drop and recreate the database, then replay the stack's init scripts."""
    from psycopg import sql

    name = transport.dbname
    with transport.connect(dbname="postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    if init_dir is not None and init_dir.is_dir():
        with transport.connect(autocommit=True) as conn:
            for script in sorted(init_dir.glob("*.sql")):
                conn.execute(script.read_bytes())
