"""The bundle boundary: what a declarative plugin bundle may ask of the stack.

A bundle gets only what it declares, and what it may declare is allowlisted here, one
function per rule. ``nself plugin lint``, ``nself plugin install`` and every project load
(so every ``nself build``) check bundles through the manifest parser, which calls these
functions: what passes lint passes the build. ``docs/plugins/security.md`` is the model in
prose.

Only the standard library is imported at module level (loaded on every build of a project
with bundles); the nginx parser is imported when a fragment is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# -- container capabilities ---------------------------------------------------------------

# Every capability a bundle's container starts without (compose: cap_drop ALL) that it may
# add back: ownership and permission handling inside its own file system, dropping to
# another user, binding ports below 1024, signalling its own processes. Nothing here
# reaches the host, the kernel, the network of other containers or their processes.
ALLOWED_CAPABILITIES = frozenset(
    {"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID"}
)
# capabilities(7) of Linux 6.x: a name outside both lists is a typo, not a request.
KNOWN_CAPABILITIES = ALLOWED_CAPABILITIES | frozenset(
    {
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "AUDIT_WRITE",
        "BLOCK_SUSPEND",
        "BPF",
        "CHECKPOINT_RESTORE",
        "DAC_READ_SEARCH",
        "IPC_LOCK",
        "IPC_OWNER",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BROADCAST",
        "NET_RAW",
        "PERFMON",
        "SETFCAP",
        "SETPCAP",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_MODULE",
        "SYS_NICE",
        "SYS_PACCT",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "SYSLOG",
        "WAKE_ALARM",
    }
)


def normalise_capability(name: str) -> str:
    """The name Docker means: case, surrounding blanks and a ``CAP_`` prefix do not count."""
    clean = name.strip().upper()
    return clean[4:] if clean.startswith("CAP_") else clean


def capability_problem(name: str) -> str | None:
    """Why a bundle may not add capability ``name`` (any spelling), or None."""
    cap = normalise_capability(name)
    if cap == "ALL":
        return f"{name!r} is not allowed for plugins: it would grant every capability"
    if cap not in KNOWN_CAPABILITIES:
        return f"{name!r} is not a Linux capability"
    if cap not in ALLOWED_CAPABILITIES:
        return f"{name!r} ({cap}) is not allowed for plugins: plugins may add only " + ", ".join(
            sorted(ALLOWED_CAPABILITIES)
        )
    return None


# -- the rest of a service declaration ---------------------------------------------------

# Values that go into docker-compose.yml as they are (paths, user, service names): no `$`
# (Compose would interpolate a setting into them), no `:` (it would add a mount source or
# options), no blanks or quotes.
CONTAINER_PATH = re.compile(r"^/(?:[A-Za-z0-9._@+-]+/?)*$")
USER = re.compile(r"^(?:\d{1,10}|[a-z_][a-z0-9_-]{0,31})(?::(?:\d{1,10}|[a-z_][a-z0-9_-]{0,31}))?$")
SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
BUNDLE_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")


def container_path_problem(path: str) -> str | None:
    """Why ``path`` is not a plain absolute container path, or None."""
    if not CONTAINER_PATH.match(path) or ".." in path.split("/") or path == "/":
        return (
            f"{path!r} must be an absolute container path of letters, digits and ._@+- "
            "(not / itself, no '..', ':', '$' or blanks)"
        )
    return None


def user_problem(user: str) -> str | None:
    if not USER.match(user):
        return f'{user!r} is not a user: write uid[:gid] or name[:group], e.g. "1000:1000"'
    return None


# -- settings -----------------------------------------------------------------------------

# Prefixes of the settings nself's own plugins own or read: a bundle may neither declare
# a setting under them nor take one as its env_prefix. tests/test_plugin_boundary.py holds
# every setting the builtins declare to this list.
RESERVED_PREFIXES = (
    "ACME_",
    "ADMIN_",
    "ALERTMANAGER_",
    "AUTH_",
    "BACKUP_",
    "BASE_",
    "CADVISOR_",
    # Docker Compose reads COMPOSE_* from the --env-file nself gives it (COMPOSE_PROFILES,
    # COMPOSE_REMOVE_ORPHANS...), so a setting there would steer the project's Compose.
    "COMPOSE_",
    "CS_",
    "DATABASE_",
    "DEPLOY_",
    "DOCKER_",
    "FUNCTIONS_",
    "GRAFANA_",
    "HASURA_",
    "HEALTHCHECK_",
    "LOKI_",
    "MAIL_",
    "MEILI_",
    "MEILISEARCH_",
    "MINIO_",
    "MONITORING_",
    "NGINX_",
    "NODE_EXPORTER_",
    "NP_",
    "NSELF_",
    "PITR_",
    "POSTGRES_",
    "PROJECT_",
    "PROMETHEUS_",
    "PROMTAIL_",
    "PUBLIC_",
    "RATE_LIMIT_",
    "ROTATION_",
    "REDIS_",
    "SEARCH_",
    "SSL_",
    "STORAGE_",
    "TEMPO_",
)
# Whole names nself reads outside those prefixes (names without '_', such as ENV or
# libpq's PGHOST, cannot be declared at all: a bundle's prefix ends with '_').
RESERVED_SETTINGS = frozenset({"NO_COLOR"})


def _reserved_prefix(name: str) -> str | None:
    return next((prefix for prefix in RESERVED_PREFIXES if name.startswith(prefix)), None)


def reserved_setting_problem(name: str) -> str | None:
    """Why a bundle may not declare (or derive) the setting ``name``, or None."""
    if name in RESERVED_SETTINGS:
        return f"{name} is reserved by nself"
    prefix = _reserved_prefix(name)
    if prefix is not None:
        return f"{name} is under the prefix {prefix}, which belongs to nself's own plugins"
    return None


def env_prefix_problem(prefix: str) -> str | None:
    """Why a bundle may not use ``prefix`` for its settings, or None."""
    for reserved in RESERVED_PREFIXES:
        if prefix.startswith(reserved) or reserved.startswith(prefix):
            return f"the prefix {prefix} overlaps {reserved}, which belongs to nself's own plugins"
    if any(name.startswith(prefix) for name in RESERVED_SETTINGS):
        return f"the prefix {prefix} would cover {', '.join(sorted(RESERVED_SETTINGS))}"
    return None


# -- what a bundle may read of the project ------------------------------------------------

# Settings any bundle may use: names and addresses, nothing that opens anything.
PUBLIC_SETTINGS = frozenset(
    {
        "BASE_DOMAIN",
        "PROJECT_NAME",
        "ENV",
        "PUBLIC_HTTPS_PORT",
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_DB",
        "HASURA_GRAPHQL_URL",
        "AUTH_SERVER_URL",
        "AUTH_CLIENT_URL",
        "FUNCTIONS_URL",
        "REDIS_HOST",
        "REDIS_PORT",
    }
)


@dataclass(frozen=True)
class Access:
    """Something of the stack a bundle asks for in ``[plugin] access``."""

    name: str
    settings: frozenset[str]
    means: str  # what the user approves, in one line


ACCESS: dict[str, Access] = {
    a.name: a
    for a in (
        Access(
            "database-read",
            frozenset(),
            "read every table of the database (its role gets pg_read_all_data)",
        ),
        Access(
            "database-superuser",
            frozenset({"POSTGRES_USER", "POSTGRES_PASSWORD", "DATABASE_URL", "POSTGRES_URL"}),
            "log in to the database as its superuser: every table, every role, and "
            "commands on the database server",
        ),
        Access(
            "hasura-admin",
            frozenset({"HASURA_GRAPHQL_ADMIN_SECRET"}),
            "use the Hasura admin secret: every query and mutation, and the GraphQL metadata",
        ),
        Access(
            "hasura-jwt-key",
            frozenset({"HASURA_JWT_KEY", "HASURA_GRAPHQL_JWT_SECRET"}),
            "read the key that signs user tokens: verify them, and mint one for any user and role",
        ),
        Access(
            "redis",
            frozenset({"REDIS_PASSWORD", "REDIS_URL"}),
            "use the Redis password: every key of the cache and its queues",
        ),
        Access(
            "storage-admin",
            frozenset({"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}),
            "use the MinIO root credentials: every bucket and file",
        ),
        Access(
            "search-admin",
            frozenset({"MEILI_MASTER_KEY"}),
            "use the MeiliSearch master key: every index",
        ),
        Access(
            "mail",
            frozenset(
                {
                    "MAIL_FROM",
                    "MAIL_SMTP_HOST",
                    "MAIL_SMTP_PORT",
                    "MAIL_SMTP_USER",
                    "MAIL_SMTP_PASSWORD",
                    "MAIL_SMTP_SECURE",
                }
            ),
            "use the SMTP account: send mail as the project",
        ),
    )
}
# Any `${NAME` opening: broader than what Compose or the template renderer substitute, so
# nothing that either would fill in can slip past the check.
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def references(text: str) -> list[str]:
    """Every setting ``text`` refers to with ``${NAME...``."""
    return REFERENCE.findall(text)


def access_problem(name: str) -> str | None:
    if name not in ACCESS:
        return f"{name!r} is not something a plugin can ask for (known: {', '.join(ACCESS)})"
    return None


def reference_problem(name: str, own: frozenset[str], access: tuple[str, ...]) -> str | None:
    """Why a bundle may not refer to setting ``name``, or None.

    ``own`` are the bundle's settings (declared and derived), ``access`` what its manifest
    asks for. Everything else of the project is closed to it.
    """
    if name in own or name in PUBLIC_SETTINGS:
        return None
    for asked in access:
        grant = ACCESS.get(asked)
        if grant is not None and name in grant.settings:
            return None
    needed = [a.name for a in ACCESS.values() if name in a.settings]
    if needed:
        return f"refers to ${{{name}}} without asking for it: add {needed[0]!r} to [plugin] access"
    return (
        f"refers to ${{{name}}}, which is not one of the plugin's settings: a plugin reads only "
        "its own settings, the public ones and what [plugin] access grants"
    )


# -- the database -------------------------------------------------------------------------

# Schemas of nself, its services and PostgreSQL: no bundle's schema may take their names.
RESERVED_SCHEMAS = frozenset(
    {"public", "auth", "storage", "partman", "cron", "hdb_catalog", "information_schema"}
)
# Extensions core creates for a bundle that declares them (trusted, or shipped in nself's
# PostgreSQL image); a bundle can never create one itself.
EXTENSIONS = frozenset(
    {
        "btree_gin",
        "btree_gist",
        "citext",
        "cube",
        "earthdistance",
        "fuzzystrmatch",
        "hstore",
        "intarray",
        "isn",
        "ltree",
        "pg_trgm",
        "pgcrypto",
        "tablefunc",
        "unaccent",
        "uuid-ossp",
        "vector",
    }
)


def schema_name(plugin: str) -> str:
    """The one schema a bundle's database role owns (``my-plugin`` -> ``my_plugin``)."""
    return plugin.replace("-", "_")


def role_name(plugin: str) -> str:
    """The database role a bundle's migrations and service connect as."""
    return "nself_plugin_" + schema_name(plugin)


# The Hasura source serving a bundle's tables, connected as its role (never the
# superuser): Hasura reads its URL from HASURA_PLUGIN_<NAME>_DATABASE_URL, which the
# Hasura service is given for every plugin that derives one.
HASURA_SOURCE_URL = re.compile(r"^HASURA_PLUGIN_[A-Z0-9_]+_DATABASE_URL$")


def hasura_source(plugin: str) -> tuple[str, str]:
    """The Hasura source of ``plugin``'s tables and the setting holding its URL
    (``my-plugin`` -> ``plugin_my_plugin``, ``HASURA_PLUGIN_MY_PLUGIN_DATABASE_URL``)."""
    schema = schema_name(plugin)
    return f"plugin_{schema}", f"HASURA_PLUGIN_{schema.upper()}_DATABASE_URL"


def hasura_replica_source(url_setting: str) -> str:
    """The setting holding a plugin source's URL on the database replica, which the
    read-only Hasura reads instead (``HASURA_PLUGIN_X_DATABASE_URL`` ->
    ``HASURA_REPLICA_PLUGIN_X_DATABASE_URL``): outside ``HASURA_PLUGIN_``, so no plugin's
    name can make it."""
    return "HASURA_REPLICA_" + url_setting.removeprefix("HASURA_")


def schema_problem(plugin: str) -> str | None:
    schema = schema_name(plugin)
    if schema in RESERVED_SCHEMAS or schema.startswith(("pg_", "np_")):
        return f"its schema would be {schema}, which belongs to nself or PostgreSQL"
    return None


def extension_problem(name: str) -> str | None:
    if name not in EXTENSIONS:
        return (
            f"{name!r} is not an extension nself creates for plugins (allowed: "
            + ", ".join(sorted(EXTENSIONS))
            + ")"
        )
    return None


# -- nginx fragments ----------------------------------------------------------------------

_TIME = r"\d+(?:ms|s|m|h|d)?"
_SIZE = r"\d+[kKmMgG]?"
_ONOFF = r"on|off"
_HEADER = r"[A-Za-z0-9-]+"
# Directives a fragment may hold, with the pattern of each argument (the last pattern
# repeats); all tune the plugin's own location, none reaches a file, another upstream or
# another site. Anything else, blocks included, is refused.
FRAGMENT_DIRECTIVES: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "proxy_connect_timeout": (1, 1, (_TIME,)),
    "proxy_send_timeout": (1, 1, (_TIME,)),
    "proxy_read_timeout": (1, 1, (_TIME,)),
    "proxy_buffering": (1, 1, (_ONOFF,)),
    "proxy_request_buffering": (1, 1, (_ONOFF,)),
    "proxy_buffer_size": (1, 1, (_SIZE,)),
    "proxy_busy_buffers_size": (1, 1, (_SIZE,)),
    "proxy_buffers": (2, 2, (r"\d+", _SIZE)),
    "proxy_max_temp_file_size": (1, 1, (_SIZE,)),
    "proxy_set_header": (2, 2, (_HEADER, r".*")),
    "proxy_hide_header": (1, 1, (_HEADER,)),
    "proxy_pass_header": (1, 1, (_HEADER,)),
    "proxy_ignore_headers": (1, 8, (_HEADER,)),
    "proxy_redirect": (1, 2, (r"[^\s]+",)),
    "proxy_cookie_path": (1, 2, (r"[^\s]+",)),
    "proxy_cookie_domain": (1, 2, (r"[^\s]+",)),
    "client_max_body_size": (1, 1, (_SIZE,)),
    "client_body_buffer_size": (1, 1, (_SIZE,)),
    "client_body_timeout": (1, 1, (_TIME,)),
    "send_timeout": (1, 1, (_TIME,)),
    "keepalive_timeout": (1, 2, (_TIME,)),
    "add_header": (2, 3, (_HEADER, r".*", r"always")),
    "expires": (1, 2, (r"[^\s]+",)),
    "gzip": (1, 1, (_ONOFF,)),
    "gzip_types": (1, 32, (r"[a-z0-9.+*/-]+",)),
    "gzip_min_length": (1, 1, (r"\d+",)),
    "gzip_proxied": (1, 9, (r"[a-z_]+",)),
    "gzip_vary": (1, 1, (_ONOFF,)),
    "charset": (1, 1, (r"[A-Za-z0-9_-]+",)),
    "default_type": (1, 1, (r"[a-z0-9.+*/-]+",)),
    "limit_rate": (1, 1, (_SIZE,)),
    "limit_rate_after": (1, 1, (_SIZE,)),
    "chunked_transfer_encoding": (1, 1, (_ONOFF,)),
    "etag": (1, 1, (_ONOFF,)),
    "if_modified_since": (1, 1, (r"off|exact|before",)),
    "tcp_nodelay": (1, 1, (_ONOFF,)),
}
# Directives that may appear more than once.
REPEATABLE = frozenset(
    {
        "proxy_set_header",
        "proxy_hide_header",
        "proxy_pass_header",
        "proxy_redirect",
        "proxy_cookie_path",
        "proxy_cookie_domain",
        "add_header",
    }
)
# The route's security headers (nginx's SECURITY_HEADERS and HSTS) and the request
# headers nself sets for the upstream: a fragment neither repeats nor replaces them.
PROTECTED_RESPONSE_HEADERS = frozenset(
    {
        "x-frame-options",
        "x-content-type-options",
        "referrer-policy",
        "permissions-policy",
        "strict-transport-security",
    }
)
PROTECTED_REQUEST_HEADERS = frozenset(
    {
        "host",
        "x-real-ip",
        "x-forwarded-for",
        "x-forwarded-proto",
        "upgrade",
        "connection",
        "authorization",
    }
)
# The login nginx asks for on a private route (NGINX_AUTH_USER/NGINX_AUTH_PASSWORD, shared
# by every private route) stays at nginx: no argument may copy the client's Authorization
# header to the plugin (nginx reads variable names in any case).
_LOGIN_VARIABLE = re.compile(r"\$http_authorization(?![a-z0-9_])", re.IGNORECASE)
# An argument nginx reads as one token once double-quoted: no quote, backslash, brace or
# control character can end it or change the structure around it.
_SAFE_ARG = re.compile(r"^[^\"'\\{}\x00-\x1f\x7f]*$")


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]
    line: int

    def text(self) -> str:
        """The statement as nself writes it: one line, every argument quoted if it must be."""
        out = [self.name]
        for arg in self.args:
            out.append(arg if re.fullmatch(r"[A-Za-z0-9._/:=,*+$-]+", arg) else f'"{arg}"')
        return " ".join(out) + ";"


def fragment_directives(
    path: Path, websocket: bool, label: str = ""
) -> tuple[list[Directive], list[str]]:
    """The statements of the nginx fragment at ``path`` (parsed by crossplane, nginx's own
    grammar) and, for each refused one, why (``label:line: reason``)."""
    label = label or path.name
    import crossplane

    payload: dict[str, Any] = crossplane.parse(
        str(path), single=True, catch_errors=True, check_ctx=False, check_args=False
    )
    problems: list[str] = []
    for error in payload.get("errors", []):
        problems.append(f"{label}:{error.get('line') or 1}: {_clean(error.get('error', ''))}")
    if problems:
        return [], problems
    parsed = payload["config"][0]["parsed"] if payload.get("config") else []
    taken = {"proxy_read_timeout"} if websocket else set()
    seen: set[str] = set()
    out: list[Directive] = []
    for stmt in parsed:
        name, line = str(stmt["directive"]), int(stmt.get("line") or 1)
        args = tuple(str(a) for a in stmt.get("args", []))
        where = f"{label}:{line}"
        why = _directive_problem(name, args, stmt.get("block") is not None, seen, taken)
        if why is not None:
            problems.append(f"{where}: {why}")
            continue
        seen.add(name)
        out.append(Directive(name, args, line))
    return out, problems


def _clean(error: str) -> str:
    text = re.sub(r"\s+in\s+\S+:\d+$", "", error).strip()
    return text or "unexpected end of the file: the last directive does not end with ';'"


def _directive_problem(
    name: str, args: tuple[str, ...], block: bool, seen: set[str], taken: set[str]
) -> str | None:
    if block:
        return f"{name} {{ ... }}: blocks are not allowed in a plugin fragment"
    spec = FRAGMENT_DIRECTIVES.get(name)
    if spec is None:
        return (
            f"the {name} directive is not allowed in a plugin fragment (it may tune the "
            "plugin's own location only: timeouts, buffers, headers, compression, limits)"
        )
    if name in taken:
        return f"{name} is already set by nself for this route (websocket = true sets it)"
    if name in seen and name not in REPEATABLE:
        return f"{name} is set twice"
    low, high, patterns = spec
    if not low <= len(args) <= high:
        count = str(low) if low == high else f"{low} to {high}"
        return f"{name} takes {count} argument(s), not {len(args)}"
    for index, arg in enumerate(args):
        pattern = patterns[min(index, len(patterns) - 1)]
        if not _SAFE_ARG.match(arg) or not re.fullmatch(pattern, arg):
            return f"{name}: {arg!r} is not a valid argument here"
    if any(_LOGIN_VARIABLE.search(arg) for arg in args):
        return (
            f"{name}: $http_authorization would hand the plugin the login of the "
            "project's private routes"
        )
    if name == "add_header" and args[0].lower() in PROTECTED_RESPONSE_HEADERS:
        return f"add_header {args[0]}: the route's security headers are nself's to set"
    if name == "proxy_set_header" and args[0].lower() in PROTECTED_REQUEST_HEADERS:
        return f"proxy_set_header {args[0]}: nself sets this header for the route"
    return None
