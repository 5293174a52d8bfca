"""Hasura's part of the hardening suite: the admin secret, the JWT key, console and dev
mode, CORS, anonymous permissions and the tenancy wall (row filters on x-hasura-tenant-id)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nself_sdk import Config, Finding, NselfError, Stack
from nself_sdk.envfiles import SECRETS_FILES

from .metadata import ANONYMOUS, Metadata, TableMeta, comparisons, pins

TENANT = "tenant_id"
APP = "source_account_id"
TENANT_VAR = "x-hasura-tenant-id"
# RFC 7518 §3.2: an HMAC key at least as long as the hash output.
HS_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
MIN_RSA_BITS = 2048
ADMIN_USERS = ("hasura", "auth", "admin")  # the services that need the admin secret
# The env files a person writes (not .env.computed, which the build derives).
ENV_FILES = (".env.dev", ".env.local", ".env.staging", ".env.prod", *SECRETS_FILES)


def findings(config: Config, stack: Stack, live: bool) -> list[Finding]:
    found = [_admin_secret(config, stack), *_jwt(config, live), *_console(config)]
    found += _cors(config, live)
    found += authorization(config, stack)
    return found


# -- authentication ---------------------------------------------------------------------------
def _admin_secret(config: Config, stack: Stack) -> Finding:
    from nself_builtins.shared.envs import services_using

    given = sorted(
        name
        for name in services_using(config, stack, ["HASURA_GRAPHQL_ADMIN_SECRET"])
        if name not in ADMIN_USERS
    )
    if given:
        return Finding(
            "admin-secret",
            "warning",
            f"the Hasura admin secret is handed to {', '.join(given)}: whoever controls "
            "them bypasses every permission",
            "give those services a role of their own (a JWT, or a webhook) instead of "
            "HASURA_GRAPHQL_ADMIN_SECRET",
            layer="authentication",
        )
    return Finding(
        "admin-secret",
        "ok",
        "the admin secret reaches Hasura and Auth only",
        layer="authentication",
    )


def _jwt(config: Config, live: bool) -> list[Finding]:
    raw = config.get("HASURA_GRAPHQL_JWT_SECRET") or ""
    try:
        jwt = json.loads(raw)
    except ValueError:
        return []  # the build refuses it (hasura's validate_config)
    if not isinstance(jwt, dict):
        return []
    where = config.where("HASURA_GRAPHQL_JWT_SECRET")
    if "jwk_url" in jwt and "key" not in jwt:
        url = str(jwt["jwk_url"])
        if url.startswith("http://") and not config.is_local:
            return [
                Finding(
                    "jwt",
                    "error",
                    f"{where}: the JWKS ({url}) is fetched over plain HTTP: anyone on the "
                    "path can hand Hasura keys of their own",
                    "use the https:// address of the JWKS",
                    layer="authentication",
                )
            ]
        return [Finding("jwt", "ok", "keys come from a JWKS over HTTPS", layer="authentication")]
    kind, key = str(jwt.get("type", "")), str(jwt.get("key", ""))
    if kind in HS_BYTES:
        need = HS_BYTES[kind]
        size = len(key.encode())
        if size < need:
            if kind == "HS256" and size < 32 and not live:
                return []  # the build's validation refuses it already
            return [
                Finding(
                    "jwt",
                    "error",
                    f"{where}: the {kind} key has {size} bytes; {kind} needs at least {need} "
                    "(RFC 7518 3.2)",
                    f"use a key of {need}+ characters (nself secrets rotate HASURA_JWT_KEY "
                    "makes 43), or HS256",
                    layer="authentication",
                )
            ]
        return [Finding("jwt", "ok", f"{kind} with a {size}-byte key", layer="authentication")]
    if kind.startswith(("RS", "PS")) and "-----BEGIN" in key:
        bits = _rsa_bits(key)
        if bits is not None and bits < MIN_RSA_BITS:
            return [
                Finding(
                    "jwt",
                    "error",
                    f"{where}: the {kind} public key has {bits} bits; use {MIN_RSA_BITS} or more",
                    "issue tokens with a new RSA key of 2048 or 4096 bits",
                    layer="authentication",
                )
            ]
        return [
            Finding("jwt", "ok", f"{kind} with a {bits or '?'}-bit key", layer="authentication")
        ]
    return [
        Finding("jwt", "ok", f"{kind or 'JWT'} verification configured", layer="authentication")
    ]


def _rsa_bits(pem: str) -> int | None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = pem.encode()
    try:
        key: Any = (
            x509.load_pem_x509_certificate(data).public_key()
            if b"CERTIFICATE" in data
            else load_pem_public_key(data)
        )
    except ValueError:
        return None
    return key.key_size if isinstance(key, rsa.RSAPublicKey) else None


def _console(config: Config) -> list[Finding]:
    if config.is_local:
        return [
            Finding(
                "console",
                "ok",
                "console and dev mode are on in dev only",
                layer="authorization",
            )
        ]
    found = []
    for name, what in (
        ("HASURA_GRAPHQL_CONSOLE_EFFECTIVE", "the console"),
        ("HASURA_GRAPHQL_DEV_MODE_EFFECTIVE", "dev mode (internal errors to clients)"),
    ):
        if config.flag(name, False):
            found.append(
                Finding(
                    "console",
                    "error",
                    f"{config.where(name)}: {name}=true turns {what} on in {config.env}",
                    "delete the line: nself keeps it off outside dev",
                    layer="authorization",
                )
            )
    return found or [
        Finding(
            "console", "ok", f"console and dev mode are off in {config.env}", layer="authorization"
        )
    ]


def _cors(config: Config, live: bool) -> list[Finding]:
    from . import ANY_ORIGIN

    effective = config.get("HASURA_GRAPHQL_CORS_DOMAIN_EFFECTIVE") or ""
    if not any(ANY_ORIGIN.match(o.strip()) for o in effective.split(",")):
        return [
            Finding("cors", "ok", f"CORS allows {effective or 'no origin'}", layer="authorization")
        ]
    if not config.is_local and not live:
        return []  # the build's validation refuses it already
    entries = [
        e
        for name in ("HASURA_GRAPHQL_CORS_DOMAIN", "HASURA_GRAPHQL_CORS_DOMAIN_EFFECTIVE")
        for e in config.origins(name)
        if e.file in ENV_FILES and e.line
    ]
    return [
        Finding(
            "cors",
            "warning" if config.is_local else "error",
            f"{config.where('HASURA_GRAPHQL_CORS_DOMAIN')}: CORS lets every website call the "
            "GraphQL API from its visitors' browsers",
            "list your sites' origins in HASURA_GRAPHQL_CORS_DOMAIN, or delete the line for "
            "the project's own",
            layer="authorization",
            fix=(lambda: _tighten_cors(config.project_dir, entries)) if entries else None,
        )
    ]


def _tighten_cors(project: Path, entries: list[Any]) -> str:
    """Comment out the lines that open CORS to every origin (the default then applies)."""
    from nself_sdk import write_atomic

    done = []
    for entry in entries:
        path = project / entry.file
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        index = entry.line - 1
        if "\n" in entry.raw:
            raise NselfError(f"{entry.where}: a value over several lines", "edit it by hand")
        if not 0 <= index < len(lines) or not lines[index].lstrip().startswith(
            (entry.key, f"export {entry.key}")
        ):
            raise NselfError(f"{entry.where} changed since it was read", "run nself harden again")
        lines[index] = (
            "# " + lines[index].rstrip("\n") + "  # any origin: off (nself harden --fix)\n"
        )
        mode = path.stat().st_mode & 0o777
        write_atomic(path, "".join(lines), mode)
        done.append(entry.where)
    return (
        f"commented out {', '.join(done)}: CORS allows the project's own sites again "
        "(run `nself build`)"
    )


# -- authorization: permissions from the metadata ---------------------------------------------
def authorization(config: Config, stack: Stack) -> list[Finding]:
    from nself_builtins.shared.schema import plugin_sources, project_sources, read

    from .metadata import read as read_metadata

    meta = read_metadata(config.project_dir)
    schema = read(plugin_sources(stack.migrations) + project_sources(config.project_dir))
    found = [
        Finding(
            "metadata",
            "warning",
            f"{problem}",
            "fix the file; it was not checked",
            layer="authorization",
        )
        for problem in meta.problems
    ]
    found += anonymous(meta)
    found += wall(meta, schema)
    found += plugin_tables_as_superuser(config, meta)
    return found


def plugin_tables_as_superuser(config: Config, meta: Metadata) -> list[Finding]:
    """A plugin's table tracked in a source that does not log in as the plugin's role
    (the source default is the superuser's): its triggers, defaults and views would run
    with every right when Hasura touches it (docs/plugins/security.md)."""
    from nself_builtins.shared.boundary import HASURA_SOURCE_URL

    served = {
        name.removeprefix("HASURA_PLUGIN_").removesuffix("_DATABASE_URL").lower(): name
        for name in config.names()
        if HASURA_SOURCE_URL.match(name)
    }
    return [
        Finding(
            "plugin-source",
            "error",
            f"{table.where}: {table.qualified} is a plugin's table, tracked in a Hasura source "
            f"that does not connect as the plugin's role ({served[table.schema]}): its "
            "triggers, defaults and views would run as the superuser",
            f"track it only through hasura/plugins/*/source.yaml (the source plugin_"
            f"{table.schema}, which reads {served[table.schema]})",
            layer="authorization",
        )
        for table in meta.tables
        if table.schema in served
        and table.connection is not None
        and served[table.schema] not in table.connection
    ]


def anonymous(meta: Metadata) -> list[Finding]:
    found = []
    for table in meta.tables:
        for kind in ("insert", "update", "delete"):
            for role in ANONYMOUS:
                if role in table.permissions.get(kind, {}):
                    found.append(
                        Finding(
                            "anonymous",
                            "error",
                            f"{table.where}: role {role} (requests without a token) may {kind} "
                            f"{'into' if kind == 'insert' else 'rows of'} {table.qualified}",
                            f"remove the {kind} permission of role {role}; signed-in roles "
                            "(user) should write",
                            layer="authorization",
                        )
                    )
        for role in ANONYMOUS:
            permission = table.permissions.get("select", {}).get(role)
            if permission is None:
                continue
            columns = permission.get("columns")
            shown = "every column" if columns in ("*", None) else ", ".join(map(str, columns))
            filtered = bool(permission.get("filter"))
            found.append(
                Finding(
                    "anonymous",
                    "warning",
                    f"{table.where}: role {role} (requests without a token) may read "
                    f"{'some' if filtered else 'every'} row of {table.qualified} ({shown})",
                    "make sure that is public data; otherwise remove the select permission of "
                    f"role {role}",
                    layer="authorization",
                )
            )
    if not found:
        found.append(
            Finding(
                "anonymous",
                "ok",
                f"requests without a token have no permission on {len(meta.tables)} tracked "
                "table(s)"
                if meta.tables
                else "no Hasura metadata in hasura/metadata/: no anonymous permissions",
                layer="authorization",
            )
        )
    return found


def wall(meta: Metadata, schema: Any) -> list[Finding]:
    """The convention wall: every role's permission on a table with tenant_id keeps to the
    caller's tenant (``tenant_id: {_eq: X-Hasura-Tenant-Id}``), and no filter compares a
    column of one convention with the session variable of the other."""
    found: list[Finding] = []
    tenant_tables = {t.qualified for t in schema.with_column(TENANT)}
    tenant_keys = {(t.schema, t.name) for t in schema.with_column(TENANT, ("table",))}
    checked = 0
    for table in meta.tables:
        known = schema.table(table.schema, table.name)
        # A table no migration creates (made by hand, by another tool) has tenant_id when
        # its permissions name it.
        columns = set(known.columns) if known is not None else _named_columns(table)
        if known is not None and TENANT not in columns:
            found += _tenant_rows_without_tenant(table, known.reads & tenant_keys)
        for kind, granted in table.permissions.items():
            for role, permission in sorted(granted.items()):
                found += _mixed(table, kind, role, permission)
                if TENANT in columns:
                    checked += 1
                    found += _tenant_rule(table, kind, role, permission)
    if not any(f.level != "ok" for f in found):
        tracked = {t.qualified for t in meta.tables}
        untracked = sorted(tenant_tables - tracked)
        message = (
            f"{checked} permission(s) on {len(tenant_tables & tracked)} tenant table(s) keep to "
            "x-hasura-tenant-id"
            if tenant_tables
            else "no table has tenant_id"
        )
        if untracked:
            message += f"; not exposed through Hasura: {', '.join(untracked)}"
        found.append(Finding("tenancy", "ok", message, layer="authorization"))
    return found


def _named_columns(table: TableMeta) -> set[str]:
    """The columns a table's permissions name: listed, compared, preset."""
    named: set[str] = set()
    for granted in table.permissions.values():
        for permission in granted.values():
            columns = permission.get("columns")
            if isinstance(columns, list):
                named |= {str(c) for c in columns}
            preset = permission.get("set")
            if isinstance(preset, dict):
                named |= {str(c) for c in preset}
            for part in ("filter", "check"):
                named |= {column for column, _var in comparisons(permission.get(part))}
    return named


def _tenant_rows_without_tenant(table: TableMeta, reads: set[tuple[str, str]]) -> list[Finding]:
    """A view (or copy) of tenant tables without tenant_id: no row filter can keep it to a
    tenant, so every role it is granted to reads every tenant's rows."""
    roles = sorted({role for granted in table.permissions.values() for role in granted})
    if not reads or not roles:
        return []
    sources = ", ".join(f"{schema}.{name}" for schema, name in sorted(reads))
    return [
        Finding(
            "tenancy",
            "warning",
            f"{table.where}: {table.qualified} reads rows of {sources} (tenant tables) but has "
            f"no tenant_id to filter on: role(s) {', '.join(roles)} see every tenant's rows",
            f"select tenant_id in {table.qualified} and filter its permissions on "
            "X-Hasura-Tenant-Id, or untrack it if it is meant for every tenant",
            layer="authorization",
        )
    ]


def _tenant_rule(
    table: TableMeta, kind: str, role: str, permission: dict[str, Any]
) -> list[Finding]:
    hint = (
        f"add tenant_id: {{_eq: X-Hasura-Tenant-Id}} to the {kind} permission of role {role}"
        " (nself db migrate create --tenant NAME shows a complete example)"
    )
    if kind in ("select", "update", "delete") and not pins(
        permission.get("filter"), TENANT, TENANT_VAR
    ):
        return [
            Finding(
                "tenancy",
                "error",
                f"{table.where}: {table.qualified} has tenant_id, but the {kind} permission of "
                f"role {role} has no row filter on x-hasura-tenant-id: it reaches every "
                "tenant's rows",
                hint,
                layer="authorization",
            )
        ]
    if kind in ("insert", "update"):
        preset = permission.get("set") or {}
        columns = permission.get("columns")
        writes_tenant = kind == "insert" or columns == "*" or TENANT in (columns or ())
        preset_ok = isinstance(preset, dict) and str(preset.get(TENANT, "")).lower() == TENANT_VAR
        if (
            writes_tenant
            and not preset_ok
            and not pins(permission.get("check"), TENANT, TENANT_VAR)
        ):
            return [
                Finding(
                    "tenancy",
                    "error",
                    f"{table.where}: role {role} may {kind} rows of {table.qualified} with any "
                    "tenant_id: a tenant can write into another tenant's data",
                    f"add set: {{tenant_id: X-Hasura-Tenant-Id}} (or a check on tenant_id) to the "
                    f"{kind} permission of role {role}",
                    layer="authorization",
                )
            ]
    return []


def _mixed(table: TableMeta, kind: str, role: str, permission: dict[str, Any]) -> list[Finding]:
    found = []
    for part in ("filter", "check"):
        for column, var in comparisons(permission.get(part)):
            crossed = (column == APP and "tenant" in var) or (
                column == TENANT and "source-account" in var
            )
            if crossed:
                found.append(
                    Finding(
                        "tenancy",
                        "error",
                        f"{table.where}: the {kind} {part} of role {role} on {table.qualified} "
                        f"compares {column} with {var}: that mixes the app convention "
                        "(source_account_id) with the tenant one (tenant_id)",
                        "compare tenant_id with X-Hasura-Tenant-Id; source_account_id separates "
                        "apps, not customers",
                        layer="authorization",
                    )
                )
    return found
