"""`nself harden`: projects built to fail each check, the fixes that make them pass, and the
suite inside `build --env prod` (errors refuse, warnings print) and `doctor --deep`.

Migrations are read with PostgreSQL's own parser, Hasura metadata from the files the Hasura
CLI writes; backups, WAL and the audit log are checked on the real PostgreSQL 15 test
cluster (NSELF_DB_URL).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import pg_cluster
from nself_sdk.testing import Result, set_env
from pg_cluster import Cluster
from test_kernel_plugins import make_distribution, site  # noqa: F401  (fixture)

Run = Callable[..., Result]
pg, db = pg_cluster.pg, pg_cluster.db


def harden(nself: Run, folder: Path, *args: str) -> tuple[Result, dict[str, Any]]:
    result = nself("harden", "--json", *args, cwd=folder)
    assert result.out.strip(), result.output
    return result, json.loads(result.out)


def found(data: dict[str, Any], check: str, level: str | None = None) -> list[dict[str, Any]]:
    items = [i for layer in data["layers"].values() for i in layer if i["check"] == check]
    return [i for i in items if level is None or i["level"] == level]


def prod(project: Path, nself: Run) -> None:
    """Real secrets and a mail server for prod, so that only what a test breaks is wrong."""
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    set_env(project, ".env.prod", AUTH_SMTP_HOST="smtp.example.com", AUTH_SMTP_USER="nself")


def migration(project: Path, name: str, sql: str) -> None:
    folder = project / "migrations" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "up.sql").write_text(sql)


def table_meta(project: Path, table: str, body: str) -> None:
    tables = project / "hasura" / "metadata" / "databases" / "default" / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    listing = tables / "tables.yaml"
    entry = f'- "!include public_{table}.yaml"\n'  # as the Hasura CLI writes it
    if entry not in (listing.read_text() if listing.exists() else ""):
        with listing.open("a") as handle:
            handle.write(entry)
    (tables / f"public_{table}.yaml").write_text(
        f"table: {{schema: public, name: {table}}}\n{body}"
    )


ORDERS = """\
CREATE TABLE public.orders (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid,
    source_account_id text NOT NULL DEFAULT 'primary',
    total numeric NOT NULL
);
"""
FILTERED = """\
select_permissions:
  - role: user
    permission:
      columns: [id, total]
      filter: {tenant_id: {_eq: X-Hasura-Tenant-Id}}
"""


# -- the report ----------------------------------------------------------------------------------
def test_the_report_is_grouped_by_the_five_layers(project: Path, nself: Run) -> None:
    result = nself("harden", "--layer", "authentication", "--layer", "authorization", cwd=project)
    lines = result.out.splitlines()
    assert lines[0] == "Authentication" and "Authorization" in lines
    assert "Network" not in lines and "Data" not in lines
    assert any("secrets" in line for line in lines) and any("tenancy" in line for line in lines)
    _r, data = harden(nself, project)
    assert set(data["layers"]) == {"network", "authentication", "authorization", "data", "audit"}
    assert all(data["layers"][layer] for layer in data["layers"]), "every layer has checks"
    item = data["layers"]["authorization"][0]
    assert set(item) == {"layer", "check", "level", "message", "hint", "plugin", "fixable"}
    bad = nself("harden", "--layer", "netwrk", cwd=project)
    assert bad.code == 2 and "no layer named netwrk" in bad.err


def test_a_fresh_project_has_no_errors_in_dev_or_prod(project: Path, nself: Run) -> None:
    for args in ((), ("--env", "prod")):
        if args:
            prod(project, nself)
        result, data = harden(nself, project, *args, "--layer", "authentication",
                              "--layer", "authorization", "--layer", "audit")  # fmt: skip
        assert result.code == 0 and data["ok"], result.output
        assert data["counts"]["error"] == 0
    assert nself("build", "--env", "prod", cwd=project).code == 0


def test_a_third_party_check_joins_and_one_without_a_layer_is_named(
    site: Path,  # noqa: F811
    project: Path,
    nself: Run,
) -> None:
    code = (
        "from nself_sdk import Finding, hookimpl\n\n@hookimpl\n"
        "def harden(config):\n"
        "    return [Finding('whoami-tls', 'error', 'whoami speaks plain text', 'set TLS',"
        " layer='network'), Finding('odd', 'ok', 'fine')]\n"
    )
    make_distribution(site, plugin="whoami", code=code)
    result, data = harden(nself, project, "--layer", "network", "--layer", "audit")
    assert result.code == 1
    assert found(data, "whoami-tls", "error")[0]["plugin"] == "whoami"
    assert "without a known layer" in found(data, "odd", "warning")[0]["message"]


def test_a_fix_that_breaks_is_reported_and_the_others_still_run(
    site: Path,  # noqa: F811
    project: Path,
    nself: Run,
) -> None:
    code = (
        "from nself_sdk import Finding, hookimpl\n\n"
        "def broken():\n    raise PermissionError(13, 'Permission denied', '/etc/x')\n\n"
        "def fine():\n    return 'tightened y'\n\n@hookimpl\n"
        "def harden(config):\n"
        "    return [Finding('x-perm', 'error', 'x is open', 'close it', layer='audit',"
        " fix=broken), Finding('y-perm', 'warning', 'y is open', 'close it', layer='audit',"
        " fix=fine)]\n"
    )
    make_distribution(site, plugin="fixer", code=code)
    result, data = harden(nself, project, "--layer", "audit", "--fix")
    assert result.code == 1, result.output
    (failed,) = data["not_fixed"]
    assert failed["check"] == "x-perm" and "Permission denied" in failed["error"], failed
    assert [f["changed"] for f in data["fixed"]] == ["tightened y"]


# -- network ------------------------------------------------------------------------------------
PUBLISHER = """\
from nself_sdk import PortBinding, Service, hookimpl

@hookimpl
def contribute_services(config):
    return [Service(name="pgpublic", image="nself-standin/postgres:3", role="plugin", port=5432,
                    published=(PortBinding(5432, 15432, "0.0.0.0"),))]
"""


def test_a_published_postgres_port_is_an_error_that_refuses_prod_builds(
    site: Path,  # noqa: F811
    project: Path,
    nself: Run,
) -> None:
    make_distribution(site, plugin="pgpublic", code=PUBLISHER)
    result, data = harden(nself, project, "--layer", "network")
    assert result.code == 1
    error = found(data, "ports", "error")[0]
    assert "pgpublic" in error["message"] and "0.0.0.0:15432->5432/tcp" in error["message"]
    prod(project, nself)
    built = nself("build", "--env", "prod", cwd=project)
    assert built.code == 1
    assert "harden: network/ports: pgpublic (pgpublic) publishes 0.0.0.0:15432" in built.err
    assert not (project / "docker-compose.yml").exists(), "nothing written"


def test_hand_written_nginx_config_cannot_weaken_tls_or_open_internal_hosts(
    project: Path, nself: Run
) -> None:
    prod(project, nself)
    conf = project / "nginx" / "conf.d" / "weak.conf"
    conf.write_text(
        "server {\n    listen 443 ssl;\n    server_name monitor.local.nself.org;\n"
        "    ssl_protocols TLSv1 TLSv1.2;\n    ssl_ciphers HIGH:RC4-SHA:!aNULL;\n"
        "    allow 172.16.0.0/12;\n}\n"
    )
    result, data = harden(nself, project, "--env", "prod", "--layer", "network")
    assert result.code == 1
    tls = found(data, "tls")
    assert any(i["level"] == "error" and "weak.conf:4" in i["message"] and "TLSv1" in i["message"]
               for i in tls)  # fmt: skip
    assert any("RC4-SHA" in i["message"] for i in tls)
    assert "weak.conf:1" in found(data, "hsts", "warning")[0]["message"]
    internal = found(data, "internal-only", "error")[0]["message"]
    assert "monitor.local.nself.org" in internal and "allows 172.16.0.0/12" in internal
    built = nself("build", "--env", "prod", cwd=project)
    assert built.code == 1 and "harden: network/tls: nginx/conf.d/weak.conf:4" in built.err
    conf.write_text(
        "server {\n    listen 443 ssl;\n    server_name monitor.local.nself.org;\n"
        '    add_header Strict-Transport-Security "max-age=31536000" always;\n'
        "    allow 10.0.0.0/8;\n    deny all;\n}\n"
    )
    set_env(project, ".env.prod", GRAFANA_ALLOW_CIDRS="10.0.0.0/8")  # listed: the project's
    result, data = harden(nself, project, "--env", "prod", "--layer", "network")
    assert not found(data, "tls", "error") and not found(data, "internal-only", "error")
    assert found(data, "hsts")[0]["level"] == "ok"
    # What an include pulls in is not read: said, never passed as checked.
    (project / "nginx" / "conf.d" / "old-tls.inc").write_text("ssl_protocols TLSv1;\n")
    conf.write_text(
        "server {\n    listen 443 ssl;\n    server_name shop.local.nself.org;\n"
        '    add_header Strict-Transport-Security "max-age=31536000" always;\n'
        "    include /etc/nginx/nself/conf.d/old-tls.inc;\n}\n"
    )
    _r, data = harden(nself, project, "--env", "prod", "--layer", "network")
    (unread,) = [i for i in found(data, "tls", "warning") if "include" in i["message"]]
    assert unread["message"].startswith("nginx/conf.d/weak.conf:5: includes "), unread
    assert "not checked" in unread["message"]
    assert not found(data, "tls", "ok")


def test_certificates_of_a_stack_not_started_yet_are_not_an_error(
    project: Path, nself: Run
) -> None:
    # `nself install` runs the suite before the stack's first start, where the ACME
    # renewer (prod's default) cannot answer yet: an error there would stop every install.
    prod(project, nself)
    # the server `nself install` prepared: prod builds into, and runs from, this folder
    (project / ".nself" / "install.json").write_text('{"env": "prod"}')
    assert nself("build", "--env", "prod", cwd=project).code == 0
    assert (project / "docker-compose.yml").is_file()
    _r, data = harden(nself, project, "--env", "prod", "--layer", "network")
    (certificate,) = found(data, "certificate")
    assert certificate["level"] == "warning", certificate
    assert certificate["message"].startswith("not checked: the acme service of prod is not")
    assert "nself start --env prod" in certificate["hint"]


# -- authentication -------------------------------------------------------------------------------
def test_a_weak_secret_is_found_and_rotated_by_fix(project: Path, nself: Run) -> None:
    prod(project, nself)
    set_env(project, ".env.secrets.prod", HASURA_GRAPHQL_ADMIN_SECRET="changeme-changeme-1")
    result, data = harden(nself, project, "--env", "prod", "--layer", "authentication")
    assert result.code == 1
    weak = found(data, "secrets", "error")
    assert [i["fixable"] for i in weak] == [True]
    assert "weak: HASURA_GRAPHQL_ADMIN_SECRET" in weak[0]["message"]
    assert "changeme" not in result.out  # values are never shown
    assert nself("build", "--env", "prod", cwd=project).code == 1  # the secrets plugin refuses
    fixed, data = harden(nself, project, "--env", "prod", "--layer", "authentication", "--fix")
    assert fixed.code == 0, fixed.output
    assert [f["check"] for f in data["fixed"]] == ["secrets"]
    assert "rotated HASURA_GRAPHQL_ADMIN_SECRET" in data["fixed"][0]["changed"]
    assert found(data, "secrets")[0]["level"] == "ok"
    assert nself("build", "--env", "prod", cwd=project).code == 0


def test_two_weak_secrets_are_rotated_together(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", HASURA_GRAPHQL_ADMIN_SECRET="password-password",
            HASURA_JWT_KEY="secret-secret-secret-secret-secret")  # fmt: skip
    result, data = harden(nself, project, "--layer", "authentication")
    assert result.code == 0  # in dev a weak secret is a warning
    assert len(found(data, "secrets", "warning")) == 2
    _r, data = harden(nself, project, "--layer", "authentication", "--fix")
    assert len(data["fixed"]) == 2 and "already rotated" in data["fixed"][1]["changed"]
    assert found(data, "secrets")[0]["level"] == "ok"
    assert "# rotated by `nself secrets rotate" in (project / ".env.secrets").read_text()


def test_readable_secret_files_are_made_private(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    (project / ".env.computed").chmod(0o644)
    result, data = harden(nself, project, "--layer", "authentication")
    assert result.code == 1
    assert (
        ".env.computed is readable by everyone"
        in found(data, "secret-files", "error")[0]["message"]
    )
    result, data = harden(nself, project, "--layer", "authentication", "--fix")
    assert result.code == 0 and (project / ".env.computed").stat().st_mode & 0o777 == 0o600


def test_jwt_keys_auth_policy_and_the_admin_secret(project: Path, nself: Run) -> None:
    prod(project, nself)
    set_env(project, ".env.prod",
            HASURA_GRAPHQL_JWT_SECRET='{"type":"HS512","key":"${HASURA_JWT_KEY}"}',
            AUTH_PASSWORD_MIN_LENGTH="6", AUTH_MFA_ENABLED="false",
            CS_1_NAME="reports", CS_1_IMAGE="nself-standin/http:3", CS_1_PORT="8001",
            CS_1_ENV_ADMIN="${HASURA_GRAPHQL_ADMIN_SECRET}")  # fmt: skip
    result, data = harden(nself, project, "--env", "prod", "--layer", "authentication")
    assert result.code == 1
    assert (
        "HS512 key has 43 bytes; HS512 needs at least 64"
        in found(data, "jwt", "error")[0]["message"]
    )
    policy = found(data, "auth-policy")
    assert any(
        i["level"] == "error" and "passwords of 6 characters" in i["message"] for i in policy
    )
    assert any(i["level"] == "warning" and "second factor" in i["message"] for i in policy)
    assert "handed to reports" in found(data, "admin-secret", "warning")[0]["message"]


# -- authorization ---------------------------------------------------------------------------------
def test_an_anonymous_role_with_select_is_found(project: Path, nself: Run) -> None:
    migration(project, "1_posts", "CREATE TABLE posts (id serial PRIMARY KEY, title text);\n")
    table_meta(project, "posts", "select_permissions:\n  - role: public\n    permission:\n"
               "      columns: [id, title]\n      filter: {}\n")  # fmt: skip
    result, data = harden(nself, project, "--layer", "authorization")
    warning = found(data, "anonymous", "warning")[0]
    assert (
        "role public (requests without a token) may read every row of public.posts"
        in (warning["message"])
    )
    assert result.code == 0  # reading public data may be meant; writing may not
    prod(project, nself)
    built = nself("build", "--env", "prod", cwd=project)
    assert built.code == 0 and "harden: authorization/anonymous" in built.err
    table_meta(project, "posts", "insert_permissions:\n  - role: public\n    permission:\n"
               "      columns: [title]\n      check: {}\n")  # fmt: skip
    result, data = harden(nself, project, "--layer", "authorization")
    assert (
        result.code == 1
        and "may insert into public.posts" in found(data, "anonymous", "error")[0]["message"]
    )
    assert nself("build", "--env", "prod", cwd=project).code == 1


def test_a_tenant_table_without_a_row_filter_is_an_error_naming_table_and_role(
    project: Path, nself: Run
) -> None:
    migration(project, "1_orders", ORDERS)
    table_meta(project, "orders", "select_permissions:\n  - role: user\n    permission:\n"
               "      columns: [id, total]\n      filter: {}\n"
               "  - role: manager\n    permission:\n      columns: [id]\n"
               "      filter: {_and: [{total: {_gt: 0}},\n"
               "                      {tenant_id: {_eq: X-Hasura-Tenant-Id}}]}\n")  # fmt: skip
    result, data = harden(nself, project, "--layer", "authorization")
    assert result.code == 1
    errors = found(data, "tenancy", "error")
    assert len(errors) == 1
    assert (
        "public.orders has tenant_id, but the select permission of role user has no row filter"
        in (errors[0]["message"])
    )
    assert "public_orders.yaml" in errors[0]["message"]
    prod(project, nself)
    built = nself("build", "--env", "prod", cwd=project)
    assert built.code == 1 and "harden: authorization/tenancy" in built.err
    table_meta(project, "orders", FILTERED)
    result, data = harden(nself, project, "--layer", "authorization")
    assert result.code == 0 and "keep to x-hasura-tenant-id" in found(data, "tenancy")[0]["message"]
    assert nself("build", "--env", "prod", cwd=project).code == 0


def test_views_copies_and_untracked_tables_of_tenants_are_behind_the_wall(
    project: Path, nself: Run
) -> None:
    # Hasura tracks views and materialized views like tables: one over a tenant table
    # exposes tenant_id, so its permissions need the same row filter.
    migration(project, "1_orders", ORDERS + """\
CREATE VIEW orders_v AS SELECT * FROM orders;
CREATE VIEW big_orders (ref, tenant_id) AS
    WITH o AS (SELECT id, tenant_id, total FROM orders) SELECT o.id, o.tenant_id FROM o;
CREATE MATERIALIZED VIEW tenant_totals AS
    SELECT x.tenant_id::text, sum(x.total) FROM (SELECT * FROM public.orders) x GROUP BY 1;
CREATE TABLE orders_copy AS SELECT id, tenant_id FROM orders;
CREATE VIEW totals AS SELECT id, total FROM orders;
""")  # fmt: skip
    migration(project, "2_rename", "ALTER VIEW orders_v RENAME TO order_list;\n")
    open_ = 'select_permissions:\n  - role: user\n    permission:\n      columns: "*"\n'
    tracked = ("order_list", "big_orders", "tenant_totals", "orders_copy", "totals")
    for name in tracked:
        table_meta(project, name, open_ + "      filter: {}\n")
    # No migration creates it (made by hand, or by another tool), but its permission names
    # tenant_id: it has one.
    table_meta(project, "ledger", "select_permissions:\n  - role: user\n    permission:\n"
               "      columns: [id, tenant_id]\n      filter: {}\n")  # fmt: skip
    result, data = harden(nself, project, "--layer", "authorization")
    assert result.code == 1
    errors = sorted(i["message"].split(": ")[1].split(" has ")[0]
                    for i in found(data, "tenancy", "error"))  # fmt: skip
    assert errors == ["public.big_orders", "public.ledger", "public.order_list",
                      "public.orders_copy", "public.tenant_totals"], errors  # fmt: skip
    # The views are no tables of their own: conventions and RLS are the tables' business.
    assert found(data, "conventions")[0]["level"] == "ok"
    for name in (*tracked, "ledger"):
        table_meta(project, name, open_ + "      filter: {tenant_id: {_eq: X-Hasura-Tenant-Id}}\n")
    result, data = harden(nself, project, "--layer", "authorization")
    assert result.code == 0, result.out  # totals has no tenant_id to filter on: a warning
    assert not found(data, "tenancy", "error")
    (problem,) = [i["message"] for i in found(data, "tenancy", "warning")]
    assert "public.totals" in problem and "rows of public.orders" in problem
    migration(project, "3_drop", "DROP VIEW totals;\n")
    (project / "hasura/metadata/databases/default/tables/public_totals.yaml").unlink()
    listing = project / "hasura/metadata/databases/default/tables/tables.yaml"
    listing.write_text(listing.read_text().replace('- "!include public_totals.yaml"\n', ""))
    result, data = harden(nself, project, "--layer", "authorization")
    assert result.code == 0, result.out


def test_the_search_path_as_postgresql_reads_it(project: Path, nself: Run) -> None:
    # "$user" names a schema only when one has the role's name: tables land in public.
    migration(project, "1_path", """\
SET search_path TO "$user", public;
CREATE TABLE invoices (id int PRIMARY KEY, tenant_id uuid);
SET search_path TO app;
CREATE TABLE notes (id int PRIMARY KEY, tenant_id uuid);
RESET search_path;
CREATE TABLE receipts (id int PRIMARY KEY, tenant_id uuid);
""")  # fmt: skip
    for table in ("invoices", "receipts"):
        table_meta(project, table, "select_permissions:\n  - role: user\n    permission:\n"
                   '      columns: "*"\n      filter: {}\n')  # fmt: skip
    _r, data = harden(nself, project, "--layer", "authorization")
    errors = sorted(i["message"].split(": ")[1].split(" has ")[0]
                    for i in found(data, "tenancy", "error"))  # fmt: skip
    assert errors == ["public.invoices", "public.receipts"], errors


def test_tenant_writes_must_pin_the_tenant(project: Path, nself: Run) -> None:
    migration(project, "1_orders", ORDERS)
    table_meta(project, "orders", FILTERED + "insert_permissions:\n  - role: user\n"
               "    permission:\n      columns: [total]\n      check: {}\n")  # fmt: skip
    _r, data = harden(nself, project, "--layer", "authorization")
    assert (
        "role user may insert rows of public.orders with any tenant_id"
        in (found(data, "tenancy", "error")[0]["message"])
    )
    table_meta(project, "orders", FILTERED + "insert_permissions:\n  - role: user\n"
               "    permission:\n      columns: [total]\n      check: {}\n"
               "      set: {tenant_id: x-hasura-Tenant-Id}\n")  # fmt: skip
    result, _d = harden(nself, project, "--layer", "authorization")
    assert result.code == 0, result.out


def test_mixed_conventions_are_errors(project: Path, nself: Run) -> None:
    migration(project, "1_items", """\
CREATE TABLE items (id int PRIMARY KEY, tenant_id text NOT NULL DEFAULT 'primary');
CREATE TABLE notes (id int PRIMARY KEY, source_account_id varchar(20));
CREATE TABLE ledger (id int PRIMARY KEY, tenant_id uuid,
                     source_account_id text NOT NULL DEFAULT 'primary');
""")  # fmt: skip
    migration(project, "2_fix", "ALTER TABLE notes ALTER COLUMN source_account_id SET NOT NULL;\n")
    table_meta(project, "ledger", "select_permissions:\n  - role: user\n    permission:\n"
               "      columns: [id]\n      filter: {_and: [{tenant_id: {_eq: X-Hasura-Tenant-Id}},"
               " {source_account_id: {_eq: X-Hasura-Tenant-Id}}]}\n")  # fmt: skip
    result, data = harden(nself, project, "--layer", "authorization")
    assert result.code == 1
    messages = [i["message"] for i in found(data, "conventions", "error")]
    assert any(
        "public.items.tenant_id is TEXT NOT NULL DEFAULT 'primary'" in m
        and "source_account_id convention under the other's name" in m
        for m in messages
    )
    assert any("public.notes.source_account_id is character varying(20) NOT NULL" in m
               and "default none" in m for m in messages)  # fmt: skip
    assert (
        "compares source_account_id with x-hasura-tenant-id"
        in (found(data, "tenancy", "error")[0]["message"])
    )


def test_row_level_security_where_the_project_uses_it(project: Path, nself: Run) -> None:
    migration(
        project,
        "1_orders",
        ORDERS
        + """\
CREATE TABLE invoices (id int PRIMARY KEY, tenant_id uuid);
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_only ON orders USING (tenant_id = current_setting('app.tenant')::uuid);
CREATE POLICY stray ON invoices USING (true);
""",
    )
    _r, data = harden(nself, project, "--layer", "authorization")
    messages = [i["message"] for i in found(data, "rls", "error")]
    assert any("public.invoices has policies (stray) but row level security is off" in m
               for m in messages)  # fmt: skip
    assert "superuser" in found(data, "rls", "warning")[0]["message"]
    migration(project, "2_rls", "ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;\n"
              "DROP POLICY stray ON invoices;\n")  # fmt: skip
    _r, data = harden(nself, project, "--layer", "authorization")
    assert not found(data, "rls", "error")
    assert (
        "public.invoices has row level security but no policy on tenant_id"
        in (found(data, "rls", "warning")[0]["message"])
    )


def test_an_unparsable_migration_is_named_not_guessed_at(project: Path, nself: Run) -> None:
    migration(project, "1_bad", "CREATE TABLE t (\n  a int,,\n);\n")
    _r, data = harden(nself, project, "--layer", "authorization")
    warning = found(data, "conventions", "warning")[0]
    assert (
        "migrations/1_bad/up.sql:2: not checked, PostgreSQL's parser refuses it"
        in (warning["message"])
    )
    # SQL nested deeper than the reader follows: named, never a traceback in every build.
    deep = "SELECT 1 AS tenant_id"
    for level in range(1500):
        deep = f"SELECT * FROM ({deep}) s{level}"
    migration(project, "1_bad", f"CREATE VIEW deep AS {deep};\n")
    result, data = harden(nself, project, "--layer", "authorization")
    assert result.code == 0, result.output
    (warning,) = found(data, "conventions", "warning")
    assert "migrations/1_bad/up.sql: not checked" in warning["message"], warning
    assert "nested too deeply" in warning["message"]


def test_cors_to_every_origin_is_tightened_by_fix(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", HASURA_GRAPHQL_CORS_DOMAIN="*")
    _r, data = harden(nself, project, "--layer", "authorization")
    assert found(data, "cors", "warning")[0]["fixable"]
    _r, data = harden(nself, project, "--layer", "authorization", "--fix")
    assert "commented out .env.local:" in data["fixed"][0]["changed"]
    assert found(data, "cors")[0]["level"] == "ok"
    assert (
        "# HASURA_GRAPHQL_CORS_DOMAIN=*  # any origin: off" in (project / ".env.local").read_text()
    )


def test_console_forced_on_outside_dev_is_an_error(project: Path, nself: Run) -> None:
    prod(project, nself)
    set_env(project, ".env.prod", HASURA_GRAPHQL_CONSOLE_EFFECTIVE="true")
    result, data = harden(nself, project, "--env", "prod", "--layer", "authorization")
    assert result.code == 1
    assert "turns the console on in prod" in found(data, "console", "error")[0]["message"]


# -- data and audit ------------------------------------------------------------------------------
def test_backup_settings_outside_dev(project: Path, nself: Run) -> None:
    prod(project, nself)
    set_env(project, ".env.prod", BACKUP_S3_BUCKET="b", BACKUP_S3_ENDPOINT="http://s3.example.net",
            BACKUP_RETENTION_DAYS="3")  # fmt: skip
    _r, data = harden(nself, project, "--env", "prod", "--layer", "data")
    assert "no automatic backups in prod" in found(data, "backup-schedule", "warning")[0]["message"]
    assert "plain HTTP" in found(data, "offsite", "error")[0]["message"]
    assert any("kept 3 days" in i["message"] for i in found(data, "backup-schedule"))


@pytest.mark.postgres
def test_a_missing_recent_backup_and_the_fix_that_takes_one(
    project: Path, nself: Run, pg: Cluster, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(pg.bindir))
    prod(project, nself)
    result, data = harden(nself, project, "--env", "prod", "--layer", "data", "--layer", "audit")
    assert result.code == 1
    missing = found(data, "backups", "error")[0]
    assert missing["message"] == "no backup of the prod database" and missing["fixable"]
    # The test cluster archives its WAL (point-in-time recovery tests share it).
    assert found(data, "wal")[0]["message"] == "WAL archiving is on (point-in-time recovery)"
    assert found(data, "migration-log")[0]["level"] == "ok"
    _r, data = harden(nself, project, "--env", "prod", "--layer", "data", "--fix")
    assert "restored it as a test" in data["fixed"][0]["changed"]
    assert found(data, "backups")[0]["level"] == "ok"
    # A backup three days old is no recent backup.
    backups = project / "backups"
    manifest = next(p for p in backups.glob("*.json") if not p.name.endswith(".verified.json"))
    record = json.loads(manifest.read_text())
    record["created"] = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    manifest.write_text(json.dumps(record))
    _r, data = harden(nself, project, "--env", "prod", "--layer", "data")
    assert "is 72 hours old" in found(data, "backups", "error")[0]["message"]
    assert not data["ok"]


@pytest.mark.postgres
def test_a_deleted_migration_audit_log_is_an_error(
    project: Path, nself: Run, pg: Cluster, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(pg.bindir))
    migration(project, "1_notes", "CREATE TABLE notes (id int PRIMARY KEY);\n")
    assert nself("db", "migrate", "up", cwd=project).code == 0
    _r, data = harden(nself, project, "--layer", "audit")
    assert "append-only" in found(data, "migration-log", "ok")[0]["message"]
    # What it takes a superuser to rewrite the log: its guards first.
    pg.sql("DROP EVENT TRIGGER np_log_keep_drop; DROP EVENT TRIGGER np_log_keep_alter", db)
    pg.sql("ALTER TABLE np_schema_migrations_log DISABLE TRIGGER np_log_append_only", db)
    pg.sql("DELETE FROM np_schema_migrations_log", db)
    _r, data = harden(nself, project, "--layer", "audit")
    messages = [i["message"] for i in found(data, "migration-log", "error")]
    assert any("append-only guard" in m and "gone or disabled" in m for m in messages)
    assert any("applied but 0 entries in their audit log" in m for m in messages)
    pg.sql("DROP TABLE np_schema_migrations_log", db)
    _r, data = harden(nself, project, "--layer", "audit")
    assert (
        "audit log (np_schema_migrations_log) is gone"
        in found(data, "migration-log", "error")[0]["message"]
    )


def test_log_retention_and_alerts_outside_dev(project: Path, nself: Run) -> None:
    prod(project, nself)
    set_env(project, ".env.prod", LOKI_RETENTION="48h")
    _r, data = harden(nself, project, "--env", "prod", "--layer", "audit")
    assert "kept 48 hours, under a week" in found(data, "log-retention", "warning")[0]["message"]
    assert "go nowhere" in found(data, "alerts", "warning")[0]["message"]
    set_env(project, ".env.prod", MONITORING_ENABLED="false")
    _r, data = harden(nself, project, "--env", "prod", "--layer", "audit")
    assert "monitoring is off in prod" in found(data, "log-retention", "warning")[0]["message"]


# -- doctor, deploy --------------------------------------------------------------------------------
def test_doctor_deep_includes_the_suite(project: Path, nself: Run) -> None:
    migration(project, "1_orders", ORDERS)
    table_meta(project, "orders", "select_permissions:\n  - role: user\n    permission:\n"
               "      columns: [id]\n      filter: {}\n")  # fmt: skip
    quick = json.loads(nself("doctor", "--json", "--check", "config", cwd=project).out)
    assert not [f for f in quick if f["check"] == "harden"]
    result = nself("doctor", "--deep", "--json", "--check", "harden", cwd=project)
    findings = json.loads(result.out)
    assert result.code == 1
    assert any(f["level"] == "error" and f["message"].startswith("authorization/tenancy:")
               for f in findings)  # fmt: skip


def test_deploy_refuses_what_the_suite_refuses(project: Path, nself: Run) -> None:
    prod(project, nself)
    migration(project, "1_orders", ORDERS)
    table_meta(project, "orders", "select_permissions:\n  - role: user\n    permission:\n"
               "      columns: [id]\n      filter: {}\n")  # fmt: skip
    set_env(project, ".env.prod", DEPLOY_HOST="prod.example.com")
    result = nself("deploy", "prod", "--dry-run", cwd=project)
    assert result.code == 1 and "harden: authorization/tenancy" in result.err


def test_the_suite_stays_out_of_dev_builds(project: Path, nself: Run) -> None:
    migration(project, "1_orders", ORDERS)
    table_meta(project, "orders", "select_permissions:\n  - role: user\n    permission:\n"
               "      columns: [id]\n      filter: {}\n")  # fmt: skip
    built = nself("build", cwd=project)
    assert built.code == 0 and "harden:" not in built.output
    assert os.environ.get("NSELF_ENV") is None


@pytest.mark.postgres
def test_migrate_create_tenant_writes_a_table_the_wall_accepts(
    project: Path, nself: Run, pg: Cluster, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = nself("db", "migrate", "create", "--tenant", "orders", cwd=project)
    assert made.code == 0, made.output
    tables = project / "hasura" / "metadata" / "databases" / "default" / "tables"
    assert '- "!include public_orders.yaml"' in (tables / "tables.yaml").read_text()
    assert (project / "hasura" / "metadata" / "databases" / "databases.yaml").is_file()
    result, data = harden(nself, project, "--layer", "authorization")
    assert result.code == 0, result.out
    assert (
        "4 permission(s) on 1 tenant table(s) keep to x-hasura-tenant-id"
        in (found(data, "tenancy")[0]["message"])
    )
    assert (
        "1 table(s) with tenant_id UUID, 1 with source_account_id"
        in (found(data, "conventions")[0]["message"])
    )
    again = nself("db", "migrate", "create", "--tenant", "orders", cwd=project)
    assert again.code == 1 and "public.orders is created already by migrations/" in again.err
    bad = nself("db", "migrate", "create", "--tenant", "Orders;drop", cwd=project)
    assert bad.code == 2 and "is not a table name" in bad.err
    # The SQL runs on PostgreSQL as written.
    monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(pg.bindir))
    assert nself("db", "migrate", "up", cwd=project).code == 0
    columns = pg.sql(
        "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns"
        " WHERE table_name = 'orders' AND column_name IN ('tenant_id', 'source_account_id')"
        " ORDER BY 1",
        db,
    )
    assert columns == [
        ("source_account_id", "text", "NO", "'primary'::text"),
        ("tenant_id", "uuid", "YES", None),
    ]


def test_hostile_metadata_is_named_not_followed(project: Path, nself: Run) -> None:
    migration(project, "1_orders", ORDERS)
    tables = project / "hasura" / "metadata" / "databases" / "default" / "tables"
    tables.mkdir(parents=True)
    (project / "secret.yaml").write_text("table: {name: orders}\nselect_permissions: []\n")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    (tables / "bomb.yaml").write_text(bomb)
    (tables / "tables.yaml").write_text(
        '- "!include ../../../../../secret.yaml"\n- "!include bomb.yaml"\n'
    )
    result, data = harden(nself, project, "--layer", "authorization")
    messages = [i["message"] for i in found(data, "metadata", "warning")]
    assert any("secret.yaml: outside hasura/, not read" in m for m in messages)
    assert any("bomb.yaml: not valid YAML (aliases (*name) are not read" in m for m in messages)
    assert result.code == 0, "nothing was read that could be checked"


def test_migrate_create_tenant_extends_the_source_the_project_has(
    project: Path, nself: Run
) -> None:
    # A Hasura project whose source is not called "default": the permissions go where
    # databases.yaml reads them from, or Hasura never sees them.
    databases = project / "hasura" / "metadata" / "databases"
    (databases / "main" / "tables").mkdir(parents=True)
    (databases / "databases.yaml").write_text(
        "- name: main\n  kind: postgres\n  configuration:\n    connection_info:\n"
        "      database_url: {from_env: HASURA_GRAPHQL_DATABASE_URL}\n"
        '  tables: "!include main/tables/tables.yaml"\n'
    )
    (databases / "main" / "tables" / "tables.yaml").write_text("[]\n")
    made = nself("db", "migrate", "create", "--tenant", "orders", cwd=project)
    assert made.code == 0, made.output
    assert "hasura/metadata/databases/main/tables/public_orders.yaml" in made.out
    assert not (databases / "default").exists()
    listing = (databases / "main" / "tables" / "tables.yaml").read_text()
    assert listing == '- "!include public_orders.yaml"\n'
    up = next(project.glob("migrations/*_create_orders/up.sql")).read_text()
    assert "hasura/metadata/databases/main/tables/public_orders.yaml" in up
    result, data = harden(nself, project, "--layer", "authorization")
    assert result.code == 0, result.out
    assert "4 permission(s) on 1 tenant table(s)" in found(data, "tenancy")[0]["message"]
    # Tables listed inline in databases.yaml: said, nothing written.
    (databases / "databases.yaml").write_text(
        "- name: main\n  kind: postgres\n  configuration:\n    connection_info:\n"
        "      database_url: {from_env: HASURA_GRAPHQL_DATABASE_URL}\n  tables: []\n"
    )
    before = sorted(p.name for p in (project / "migrations").iterdir())
    refused = nself("db", "migrate", "create", "--tenant", "invoices", cwd=project)
    assert refused.code == 1 and "lists its tables in databases.yaml itself" in refused.err
    assert sorted(p.name for p in (project / "migrations").iterdir()) == before


def test_a_plugins_table_tracked_in_the_superusers_source_is_an_error(
    project: Path, tmp_path: Path, nself: Run
) -> None:
    """A plugin's tables are served by its own source (its role); tracked by hand in the
    source default, Hasura would run its triggers, defaults and views as the superuser."""
    from nself_builtins.plugins import install_folder
    from plugin_helpers import make_bundle

    tables = "- table: {schema: notes, name: items}\n"
    install_folder(
        project,
        make_bundle(
            tmp_path,
            "notes",
            extra='[database]\nmigrations = "m"\nhasura_metadata = "tables.yaml"\n',
            service=False,
            files={"m/0001_init.up.sql": "CREATE TABLE items (id int);\n", "tables.yaml": tables},
        ),
    )
    assert nself("secrets", "generate", cwd=project).code == 0
    assert nself("build", cwd=project).code == 0
    result, data = harden(nself, project, "--layer", "authorization")
    assert found(data, "plugin-source") == [], result.output
    databases = project / "hasura" / "metadata" / "databases"
    (databases / "default" / "tables").mkdir(parents=True)
    (databases / "default" / "tables" / "tables.yaml").write_text(tables)
    (databases / "databases.yaml").write_text(
        "- name: default\n  kind: postgres\n  configuration:\n    connection_info:\n"
        "      database_url: {from_env: HASURA_GRAPHQL_DATABASE_URL}\n"
        '  tables: "!include default/tables/tables.yaml"\n'
    )
    result, data = harden(nself, project, "--layer", "authorization")
    errors = found(data, "plugin-source", "error")
    assert result.code == 1 and len(errors) == 1, result.output
    assert errors[0]["message"].startswith(
        "hasura/metadata/databases/default/tables/tables.yaml: notes.items is a plugin's table"
    )
    # Listed under the plugin's own source, as `nself build` writes it: fine, and read once.
    (databases / "default" / "tables" / "tables.yaml").write_text("[]\n")
    source = (project / "hasura/plugins/notes/source.yaml").read_text()
    with (databases / "databases.yaml").open("a") as handle:
        handle.write(source)
    result, data = harden(nself, project, "--layer", "authorization")
    assert found(data, "plugin-source") == [], result.output
