"""``nself db migrate create --tenant TABLE``: a migration creating a table of the convention
wall, and its Hasura permissions (rows filtered on X-Hasura-Tenant-Id)."""

from __future__ import annotations

from pathlib import Path

from nself_builtins.shared.tenancy import metadata_files, migration_sql, table_problem
from nself_sdk import NselfError, UsageError, write_atomic


def create_tenant_table(project: Path, table: str, name: str | None) -> list[str]:
    """Write the migration and the metadata; returns what was written (project-relative).
    Nothing is written when the table exists already in the migrations or the metadata."""
    from nself_builtins.shared.schema import project_sources, read

    from .migrations import create

    why = table_problem(table)
    if why is not None:
        raise UsageError(why, "e.g. nself db migrate create --tenant orders")
    known = read(project_sources(project)).table("public", table)
    if known is not None:
        raise NselfError(
            f"public.{table} is created already by {known.where}",
            "choose another name, or add tenant_id and source_account_id to it in a new migration",
        )
    files = metadata_files(project, table)
    own = next(iter(files))
    if own.exists():
        raise NselfError(
            f"{own.relative_to(project)} exists already; nothing was written",
            "remove it, or choose another table name",
        )
    folder = create(project, name or f"create_{table}")
    up, down = migration_sql(table, own.relative_to(project).as_posix())
    (folder / "up.sql").write_text(up, encoding="utf-8")
    (folder / "down.sql").write_text(down, encoding="utf-8")
    written = [f"{folder.relative_to(project)}/up.sql", "down.sql"]
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text, 0o644)
        written.append(path.relative_to(project).as_posix())
    return written
