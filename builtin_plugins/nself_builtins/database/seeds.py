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

PROD_SAFE = re.compile(r"^\s*--\s*nself:\s*prod-safe\b", re.IGNORECASE | re.MULTILINE)


def seed_files(project: Path, env: str) -> list[Path]:
    folder = project / "seeds"
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.glob("*.sql") if p.is_file())
    if env == "prod":
        files = [p for p in files if PROD_SAFE.search(p.read_text(encoding="utf-8"))]
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
