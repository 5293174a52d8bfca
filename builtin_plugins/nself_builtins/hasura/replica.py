"""A second, read-only Hasura on the database replica (``HASURA_REPLICA_ENABLED``).

What Hasura CE v2.44 offers, read from its source (github.com/hasura/graphql-engine):

* routing queries to read replicas (``HASURA_GRAPHQL_READ_REPLICA_URLS``, a source's
  ``read_replicas``) is Hasura Cloud / Enterprise only: the CE server has no such option
  (server/src-lib/Hasura/Server/Init/Arg/Command/Serve.hs) and its Postgres source
  resolver builds the primary's pool alone (``mkPgSourceResolver`` in Hasura/App.hs), so
  CE accepts ``read_replicas`` in metadata and ignores it;
* read-only mode and eventing-disabled mode are fixed off in CE (``soReadOnlyMode =
  ReadOnlyModeDisabled``, ``soEventingMode = EventingEnabled`` in Hasura/Server/Init.hs).

What works in CE, and what nself runs: another Hasura whose database is the replica and
whose metadata is the primary's (``HASURA_GRAPHQL_METADATA_DATABASE_URL``: one metadata,
picked up from the primary within a second, the way Hasura runs several instances), with

* only the GraphQL API (``HASURA_GRAPHQL_ENABLED_APIS=graphql``): metadata is changed
  through the primary Hasura;
* maintenance mode on: it never migrates the source catalog (which would write to the
  replica; it does so only when the source has event triggers), and refuses metadata
  changes;
* event triggers and async actions not fetched (``HASURA_GRAPHQL_EVENTS_FETCH_BATCH_SIZE=0``,
  ``HASURA_GRAPHQL_ASYNC_ACTIONS_FETCH_INTERVAL=0``): the primary Hasura delivers them.

Queries sent to its own route read the replica; mutations sent there fail (the replica is
a hot standby, which refuses writes). Nothing moves reads off the primary Hasura by
itself: clients send queries to one URL and mutations to the other.
"""

from __future__ import annotations

from pathlib import Path

from nself_builtins.shared import replicas
from nself_sdk import Config, HealthCheck, Problem, Route, Service
from nself_sdk.declare import IMAGE_SETTING_LABEL

SERVICE = "hasura-replica"
SWITCH = "HASURA_REPLICA_ENABLED"
SUBDOMAIN = "HASURA_REPLICA_SUBDOMAIN"
DEFAULT_SUBDOMAIN = "api-read"


def enabled(config: Config) -> bool:
    return config.flag(SWITCH, False) and config.flag("HASURA_ENABLED", True)


def runs(config: Config) -> bool:
    """Switched on with a replica to read from (without one the build stops anyway)."""
    return enabled(config) and bool(replicas.names(config))


def replica_names(config: Config) -> list[str]:
    return replicas.names(config)


def service(config: Config, primary: Service) -> Service:
    """The read-only Hasura: the primary's image, settings and secrets, the replica's data."""
    env = {
        k: v
        for k, v in primary.environment.items()
        if k not in ("HASURA_GRAPHQL_DATABASE_URL", "HASURA_GRAPHQL_ENABLE_CONSOLE")
    }
    # The plugins' sources (each its own role) are read from the replica too; a URL the
    # project sets itself under that name (no replica URL derived for it) is left alone.
    if any(k.startswith("HASURA_PLUGIN_") for k in env):  # the bundles' rules load lazily
        from nself_builtins.shared.boundary import HASURA_SOURCE_URL, hasura_replica_source

        env.update(
            {
                k: f"${{{hasura_replica_source(k)}}}"
                for k in env
                if HASURA_SOURCE_URL.match(k) and config.get(hasura_replica_source(k)) is not None
            }
        )
    env.update(
        {
            "HASURA_GRAPHQL_DATABASE_URL": "${DATABASE_REPLICA_URL}",
            "HASURA_GRAPHQL_METADATA_DATABASE_URL": "${DATABASE_URL}",
            "HASURA_GRAPHQL_ENABLE_CONSOLE": "false",
            "HASURA_GRAPHQL_ENABLED_APIS": "graphql",
            "HASURA_GRAPHQL_ENABLE_MAINTENANCE_MODE": "true",
            "HASURA_GRAPHQL_EVENTS_FETCH_BATCH_SIZE": "0",
            "HASURA_GRAPHQL_ASYNC_ACTIONS_FETCH_INTERVAL": "0",
        }
    )
    first = replicas.names(config)[:1]
    return Service(
        SERVICE,
        primary.image,
        title="Hasura (read-only, on the replica)",
        port=8080,
        environment=env,
        healthcheck=HealthCheck(
            ("CMD", "curl", "-fsS", "http://localhost:8080/healthz"),
            retries=10,
            start_period="30s",
        ),
        # The primary Hasura migrates the metadata catalog first (maintenance mode would
        # refuse a catalog of another version).
        depends_on=("hasura", *(replicas.service(n) for n in first)),
        health_url=f"http://{SERVICE}:8080/healthz",
        # HASURA_IMAGE runs another image here too (a mirror's)
        labels={k: v for k, v in primary.labels.items() if k == IMAGE_SETTING_LABEL},
        contract=primary.contract,
    )


def route(config: Config) -> Route:
    return Route(
        config.text(SUBDOMAIN, DEFAULT_SUBDOMAIN),
        SERVICE,
        8080,
        service=SERVICE,
        websocket=True,
        rate_zone="graphql",
    )


def env(config: Config) -> dict[str, str]:
    if not runs(config):
        return {}
    return {"HASURA_GRAPHQL_REPLICA_URL": f"http://{SERVICE}:8080/v1/graphql"}


def problems(config: Config) -> list[Problem]:
    if not config.flag(SWITCH, False):
        return []
    where = config.where(SWITCH)
    if not config.flag("HASURA_ENABLED", True):
        return [Problem("warning", f"{where}: {SWITCH}=true is ignored: HASURA_ENABLED=false")]
    if not replicas.names(config):
        return [
            Problem(
                "error",
                f"{where}: {SWITCH}=true, but the database has no replica to read from",
                "add one first: nself db replica add",
            )
        ]
    return []


def offloaded(project: Path) -> tuple[list[str], list[str], list[str]]:
    """Which of the project's Hasura sources the read-only Hasura reads from the replica,
    which it does not (their URL comes from elsewhere), and notes."""
    from nself_builtins.shared.boundary import HASURA_SOURCE_URL

    from .metadata import database_sources

    sources, unreadable = database_sources(project)
    notes = [f"not read: {problem}" for problem in unreadable]
    if not sources:
        return ["default"], [], notes
    read: list[str] = []
    other: list[str] = []
    for source in sources:
        if source.url_env == "HASURA_GRAPHQL_DATABASE_URL" or (
            source.url_env is not None and HASURA_SOURCE_URL.match(source.url_env)
        ):
            read.append(source.name)
        else:
            other.append(source.name)
        if source.read_replicas:
            notes.append(
                f"source {source.name} lists read_replicas: Hasura CE accepts and ignores "
                "them (Cloud and Enterprise only)"
            )
    return read, other, notes
