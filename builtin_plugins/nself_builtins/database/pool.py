"""`nself db pool status`: the PgBouncer plugin's pools, read from its admin console.

PgBouncer is a plugin bundle (`nself plugin install pgbouncer`), service ``pgbouncer`` on
``PGBOUNCER_PORT``; its ``admin_users`` is the stack's database user, so nself logs in to
the console (the virtual database ``pgbouncer``) with POSTGRES_USER and POSTGRES_PASSWORD,
at the container's address on the project network (through an SSH tunnel for a deployed
environment). ``SHOW POOLS``, ``SHOW STATS`` and ``SHOW CONFIG`` are read as they are;
columns are taken by name, so versions that add some still read.

``DATABASE_POOL_URL`` is the address services use to go through the pool (the pool when
PgBouncer is installed, the database itself otherwise: see ``pool_url``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from nself_sdk import Config, NselfError

if TYPE_CHECKING:
    from nself_sdk import Stack

SERVICE = "pgbouncer"
PORT_SETTING = "PGBOUNCER_PORT"
HOST_SETTING = "PGBOUNCER_HOST"
# What the settings the seed names become in pgbouncer.ini (the bundle renders them).
SETTINGS = {
    "PGBOUNCER_POOL_SIZE": "default_pool_size",
    "PGBOUNCER_MAX_CLIENT_CONN": "max_client_conn",
    "PGBOUNCER_DEFAULT_POOL_MODE": "pool_mode",
}
INSTALL_HINT = "install it: nself plugin install pgbouncer && nself build && nself start"
# The stack's services that connect to PostgreSQL without the pool, and why.
DIRECT = {
    "hasura": "keeps its own pool (HASURA_GRAPHQL_PG_CONNECTIONS) and prepares statements",
    "hasura-replica": "reads the replica directly",
    "auth": "runs its own migrations when it starts",
    "admin": "a dev tool with a handful of connections",
    "db-backup": "pg_dump needs a session of its own",
}


def pool_url(config: Config, derived: dict[str, str]) -> str:
    """The pool's URL when the PgBouncer plugin derives its host and port, else the
    database's own URL (so a service written against DATABASE_POOL_URL works either way)."""
    host = config.get(HOST_SETTING) or derived.get(HOST_SETTING)
    port = config.get(PORT_SETTING) or derived.get(PORT_SETTING)
    if not host or not port:
        return derived.get("DATABASE_URL") or config.text("DATABASE_URL")
    user = quote(config.text("POSTGRES_USER", "postgres"), safe="")
    password = quote(config.text("POSTGRES_PASSWORD"), safe="")
    db = config.text("POSTGRES_DB", "nself")
    return f"postgres://{user}:{password}@{host}:{port}/{db}?sslmode=disable"


def installed(config: Config, stack: Stack | None = None) -> bool:
    if stack is not None:
        return stack.service(SERVICE) is not None
    return "PGBOUNCER_POOL_SIZE" in config.declared


def routes(config: Config, stack: Stack) -> dict[str, list[str]]:
    """Which services reach the database through the pool and which directly, from the
    settings their environment refers to (followed through the env files: a custom
    service's DATABASE_URL is its CS_N_ENV_DATABASE_URL, which names DATABASE_POOL_URL)."""
    from nself_builtins.shared.envs import references, service_references

    def leads_to(name: str, target: str, seen: set[str]) -> bool:
        if name == target:
            return True
        entry = config.resolver.entry(name)
        if name in seen or entry is None or entry.literal:
            return False
        seen.add(name)
        return any(leads_to(ref, target, seen) for ref in references(entry.raw))

    through: list[str] = []
    direct: list[str] = []
    for service in stack.services:
        if service.name == SERVICE:
            continue
        refs = service_references(service)
        if any(leads_to(ref, "DATABASE_POOL_URL", set()) for ref in refs):
            through.append(service.name)
        elif service.name in DIRECT or any(leads_to(r, "DATABASE_URL", set()) for r in refs):
            direct.append(service.name)
    return {"pool": sorted(through), "direct": sorted(direct)}


@dataclass
class Status:
    pools: list[dict[str, Any]] = field(default_factory=list)
    stats: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)
    asked: dict[str, str] = field(default_factory=dict)  # setting -> value the env asks for
    drift: list[str] = field(default_factory=list)  # settings the running pool does not use
    routes: dict[str, list[str]] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _rows(conn: Any, sql: str) -> list[dict[str, Any]]:
    cur = conn.execute(sql)
    columns = [d.name for d in cur.description or ()]
    return [{c: _plain(v) for c, v in zip(columns, row, strict=False)} for row in cur.fetchall()]


def read(config: Config, host: str, port: int) -> Status:
    """Read the admin console at ``host:port``."""
    from .transport import CONNECT_TIMEOUT, psycopg_module

    driver = psycopg_module()
    try:
        conn = driver.connect(
            host=host,
            port=port,
            user=config.text("POSTGRES_USER", "postgres"),
            password=config.text("POSTGRES_PASSWORD"),
            dbname="pgbouncer",
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
        )
    except driver.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NselfError(
            f"cannot reach PgBouncer's admin console at {host}:{port}: {first}",
            "is it running? `nself status pgbouncer`; its admin_users must be POSTGRES_USER",
        ) from None
    with conn:
        status = Status(pools=_rows(conn, "SHOW POOLS"), stats=_rows(conn, "SHOW STATS"))
        status.config = {r["key"]: str(r["value"]) for r in _rows(conn, "SHOW CONFIG")}
    for setting, key in SETTINGS.items():
        asked = config.text(setting)
        status.asked[setting] = asked
        running = status.config.get(key)
        if asked and running is not None and running != asked:
            status.drift.append(
                f"{setting}={asked}, but the running PgBouncer uses {key}={running}"
            )
    return status


def status(config: Config, stack: Stack) -> Status:
    """The pool of ``config``'s stack: on this machine, or on the environment's server."""
    if not installed(config, stack):
        raise NselfError("the PgBouncer plugin is not installed in this project", INSTALL_HINT)
    port = config.int(PORT_SETTING, 0)
    if not port:
        raise NselfError(f"{PORT_SETTING} is not set", "run `nself build` after installing")
    from nself_builtins.shared.placement import runs_here

    if runs_here(config):
        found = read(config, _local_address(config), port)
    else:
        found = _remote(config, port)
    found.routes = routes(config, stack)
    return found


def _local_address(config: Config) -> str:
    """The pgbouncer container's address on the project network (as for postgres)."""
    from .transport import StackTransport

    user, password = config.text("POSTGRES_USER", "postgres"), config.text("POSTGRES_PASSWORD")
    return StackTransport(config, user, password, "pgbouncer", service=SERVICE).address()


_SERVER_ADDRESS = r"""
P=$1; NAME=$2; SVC=$3
cd "$P/current" 2>/dev/null || { echo "nothing is deployed on this server yet" >&2; exit 40; }
id=$(compose --project-name "$NAME" --file docker-compose.yml --env-file .env.computed \
  --project-directory . ps -q "$SVC")
[ -n "$id" ] || { echo "the $SVC service is not running on the server" >&2; exit 40; }
docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$id"
"""


def _remote(config: Config, port: int) -> Status:
    if not config.text("DEPLOY_HOST").strip():
        raise NselfError(
            f"reaching the {config.env} pool is not available yet",
            f"set DEPLOY_HOST for {config.env} (the server `nself deploy` ships to)",
        )
    from nself_builtins.shared.remote import Server

    server = Server.from_config(config)
    tunnel = None
    try:
        found = server.run(_SERVER_ADDRESS, server.path, config.project_name, SERVICE)
        ips = found.stdout.split()
        if found.returncode != 0 or not ips:
            raise NselfError(f"cannot find the pgbouncer service on the {config.env} server")
        local, tunnel = server.tunnel(ips[0], port)
        return read(config, "127.0.0.1", local)
    finally:
        if tunnel is not None:
            tunnel.terminate()
            tunnel.wait(timeout=10)
        server.close()
