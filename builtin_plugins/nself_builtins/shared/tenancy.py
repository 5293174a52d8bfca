"""The convention wall: what a table of a multi-tenant project looks like.

``source_account_id TEXT NOT NULL DEFAULT 'primary'`` separates the apps one deploy serves;
``tenant_id UUID`` (nullable) separates paying customers, and every role's Hasura
permission on a table that has it keeps rows to the caller's ``X-Hasura-Tenant-Id``.
Mixing them up leaks data silently; ``nself db migrate create --tenant`` writes a table that
keeps both, with its Hasura permissions, and ``nself harden`` checks every table.
"""

from __future__ import annotations

import re
from pathlib import Path

TENANT = "tenant_id"
APP = "source_account_id"
APP_DEFAULT = "primary"
TENANT_VAR = "X-Hasura-Tenant-Id"
# Where the Hasura CLI keeps a source's tables (metadata version 3).
TABLES_DIR = "hasura/metadata/databases/default/tables"
DATABASES = "hasura/metadata/databases/databases.yaml"
TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

UP = """\
-- {table}: a table of the tenancy wall (`nself db migrate create --tenant {table}`).
-- tenant_id separates paying customers (UUID, NULL for rows of no tenant); every Hasura
-- permission on it filters rows on X-Hasura-Tenant-Id ({meta}).
-- source_account_id separates the apps this deploy serves (TEXT NOT NULL DEFAULT 'primary').
CREATE TABLE public."{table}" (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid,
    source_account_id text NOT NULL DEFAULT 'primary',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX "{table}_tenant_id_idx" ON public."{table}" (tenant_id);
CREATE INDEX "{table}_source_account_id_idx" ON public."{table}" (source_account_id);
"""
DOWN = 'DROP TABLE public."{table}";\n'
METADATA = """\
# Written by `nself db migrate create --tenant {table}`. Every role keeps to its tenant:
# rows are filtered on X-Hasura-Tenant-Id and new rows get it (`nself harden` checks).
# tenant_id and source_account_id are not writable by the role: the session and the
# default set them.
table:
  schema: public
  name: {table}
select_permissions:
  - role: user
    permission:
      columns: [id, tenant_id, source_account_id, created_at, updated_at]
      filter:
        tenant_id: {{_eq: X-Hasura-Tenant-Id}}
insert_permissions:
  - role: user
    permission:
      columns: []
      check:
        tenant_id: {{_eq: X-Hasura-Tenant-Id}}
      set:
        tenant_id: X-Hasura-Tenant-Id
update_permissions:
  - role: user
    permission:
      columns: [updated_at]
      filter:
        tenant_id: {{_eq: X-Hasura-Tenant-Id}}
      check:
        tenant_id: {{_eq: X-Hasura-Tenant-Id}}
delete_permissions:
  - role: user
    permission:
      filter:
        tenant_id: {{_eq: X-Hasura-Tenant-Id}}
"""
DATABASES_YAML = """\
- name: default
  kind: postgres
  configuration:
    connection_info:
      database_url:
        from_env: HASURA_GRAPHQL_DATABASE_URL
  tables: "!include default/tables/tables.yaml"
"""


def table_problem(table: str) -> str | None:
    if not TABLE.match(table):
        return (
            f"{table!r} is not a table name nself writes: lowercase letters, digits and _, "
            "starting with a letter or _, at most 63"
        )
    return None


def migration_sql(table: str, meta: str = f"{TABLES_DIR}/public_{{table}}.yaml") -> tuple[str, str]:
    """The migration of ``table``; ``meta`` names its permissions' file in the comment."""
    return UP.format(table=table, meta=meta.format(table=table)), DOWN.format(table=table)


def tables_listing(project: Path) -> Path:
    """The ``tables.yaml`` Hasura reads the stack's source's tables from: the one
    ``databases.yaml`` includes for its source ``default`` (else the source reading
    HASURA_GRAPHQL_DATABASE_URL, else the first), or the CLI's default place without one."""
    import yaml

    from nself_sdk import NselfError

    databases = project / DATABASES
    if not databases.is_file():
        return project / TABLES_DIR / "tables.yaml"

    class Loader(yaml.SafeLoader):
        pass

    def include(loader: yaml.SafeLoader, node: yaml.Node) -> str:
        return "!include " + str(loader.construct_scalar(node))  # type: ignore[arg-type]

    Loader.add_constructor("!include", include)
    try:
        listed = yaml.load(databases.read_text(encoding="utf-8"), Loader=Loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise NselfError(f"{DATABASES}: not readable ({exc})", "fix the file") from None
    sources = [
        s
        for s in (listed if isinstance(listed, list) else ())
        if isinstance(s, dict) and s.get("kind", "postgres") == "postgres"
    ]

    def reads_stack(source: dict[str, object]) -> bool:
        return "HASURA_GRAPHQL_DATABASE_URL" in str(source.get("configuration"))

    source = next(
        (s for s in sources if s.get("name") == "default"),
        next((s for s in sources if reads_stack(s)), sources[0] if sources else None),
    )
    if source is None:
        raise NselfError(f"{DATABASES} lists no PostgreSQL source", "add the source default")
    tables = source.get("tables")
    if isinstance(tables, str) and tables.startswith("!include "):
        import os

        listing = Path(
            os.path.normpath(databases.parent / tables.removeprefix("!include ").strip())
        )
        if listing.resolve().is_relative_to((project / "hasura").resolve()):
            return listing
    raise NselfError(
        f"{DATABASES}: source {source.get('name')} lists its tables in databases.yaml itself "
        "(or outside hasura/); nothing was written",
        f"move them into {source.get('name')}/tables/tables.yaml (the Hasura CLI's layout, "
        '`tables: "!include ..."`), then run the command again',
    )


def metadata_files(project: Path, table: str) -> dict[Path, str]:
    """The files to write for ``table``'s permissions: its own file beside the tables list
    Hasura reads, that list with it included, and the sources file when the project has
    none. Existing lists are kept as they are and extended."""
    listing = tables_listing(project)
    tables = listing.parent
    files = {tables / f"public_{table}.yaml": METADATA.format(table=table)}
    entry = f'- "!include public_{table}.yaml"\n'
    text = listing.read_text(encoding="utf-8") if listing.is_file() else ""
    if text.strip() in ("", "[]"):
        text = ""
    if entry.strip() not in text:
        files[listing] = text + ("" if not text or text.endswith("\n") else "\n") + entry
    if not (project / DATABASES).is_file():
        files[project / DATABASES] = DATABASES_YAML
    return files
