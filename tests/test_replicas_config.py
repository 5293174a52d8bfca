"""Read replicas, the read-only Hasura and the pool URL as configuration (issue #15): what
the build makes of POSTGRES_REPLICAS and HASURA_REPLICA_ENABLED, and the mistakes it
refuses. The replicas running on the real engine are tests/test_db_replicas.py; the
password the primary's init script derives in SQL is proven equal to the build's there
(a replica of a fresh stack logs in with the one and the role was made with the other).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import nself_sdk
from nself_builtins.shared.envedit import set_values
from nself_builtins.shared.envs import derived_from
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]
CATALOGUE = Path(__file__).resolve().parents[1] / "plugin_registry" / "catalogue"


def compose(project: Path) -> dict[str, dict[str, object]]:
    services: dict[str, dict[str, object]] = yaml.safe_load(
        (project / "docker-compose.yml").read_text()
    )["services"]
    return services


def test_a_replica_is_an_internal_hot_standby_of_the_primary(project: Path, nself: Run) -> None:
    set_env(project, POSTGRES_REPLICAS="replica1,eu-2")
    built = nself("build", "--json", cwd=project)
    assert built.code == 0, built.output
    services = compose(project)
    primary, replica = services["postgres"], services["postgres-replica1"]
    assert "postgres-eu-2" in services
    assert "ports" not in replica and "ports" not in primary  # internal only, like the primary
    assert replica["image"] == primary["image"]  # same major version as the primary
    assert replica["user"] == "postgres" and replica["cap_drop"] == ["ALL"]
    assert "cap_add" not in replica  # no root step: nothing to grant
    assert replica["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert replica["volumes"] == [
        "postgres_replica1_data:/var/lib/postgresql/data",
        "./postgres/replica:/nself/replica:ro",
    ]
    command = replica["command"]
    assert isinstance(command, list)
    assert "hot_standby=on" in command and "primary_slot_name=nself_replica_replica1" in command
    conninfo = next(c for c in command if c.startswith("primary_conninfo="))
    assert "user=nself_replicator" in conninfo and "application_name=replica1" in conninfo
    assert "password" not in conninfo.replace("passfile", "")  # the password is in a file
    assert replica["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]  # type: ignore[index]
    env = replica["environment"]
    assert isinstance(env, dict) and "POSTGRES_PASSWORD" not in env  # never the superuser's
    assert env["NSELF_REPLICATION_PASSWORD"] == "${POSTGRES_REPLICATION_PASSWORD}"
    # The generated scripts; no secret in any file but .env.computed.
    script = (project / "postgres/replica/replica.sh").read_text()
    init = (project / "postgres/init/10-nself-replication.sh").read_text()
    assert "pg_basebackup" in script and 'mv "$partial" "$PGDATA"' in script
    assert "host replication nself_replicator all scram-sha-256" in init
    computed = (project / ".env.computed").read_text()
    config = nself_sdk.load_config(project)
    secret = config.text("POSTGRES_REPLICATION_PASSWORD")
    assert len(secret) == 64 and secret in computed
    for path in (
        "docker-compose.yml",
        "postgres/replica/replica.sh",
        "postgres/init/10-nself-replication.sh",
    ):
        assert secret not in (project / path).read_text()
        assert config.text("POSTGRES_PASSWORD") not in (project / path).read_text()
    # The URLs services read: the first replica, and all of them in order.
    assert config.text("DATABASE_REPLICA_URL").endswith(
        "@postgres-replica1:5432/nself?sslmode=disable"
    )
    urls = config.text("DATABASE_REPLICA_URLS").split(",")
    assert [u.split("@")[1] for u in urls] == [
        "postgres-replica1:5432/nself?sslmode=disable",
        "postgres-eu-2:5432/nself?sslmode=disable",
    ]
    # Rotating POSTGRES_PASSWORD changes the derived replication password too.
    assert "POSTGRES_REPLICATION_PASSWORD" in derived_from(config, {"POSTGRES_PASSWORD"})


def test_without_replicas_there_is_no_replica_url_to_read_the_primary_by_mistake(
    project: Path, nself: Run
) -> None:
    assert nself("build", cwd=project).code == 0
    assert not (project / "postgres/replica").exists()
    assert not (project / "postgres/init/10-nself-replication.sh").exists()
    set_env(project, CS_1_NAME="reports", CS_1_IMAGE="nself/reports:1.0", CS_1_PORT="8001",
            CS_1_ENV_DATABASE_URL="${DATABASE_REPLICA_URL}")  # fmt: skip
    failed = nself("build", cwd=project)
    assert failed.code == 1
    assert "DATABASE_REPLICA_URL" in failed.err and "Traceback" not in failed.err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Replica_1", "'Replica_1' is not a replica name"),
        ("r1,r1", "names the replica 'r1' twice"),
        ("a,b,c,d,e,f", "asks for 6 replicas; at most 5"),
        ("x-", "'x-' is not a replica name"),
    ],
)
def test_bad_replica_lists_stop_the_build(
    project: Path, nself: Run, value: str, message: str
) -> None:
    set_env(project, POSTGRES_REPLICAS=value)
    failed = nself("build", cwd=project)
    assert failed.code == 1
    assert ".env.local:" in failed.err and message in failed.err
    assert not (project / "docker-compose.yml").exists()


def test_the_read_only_hasura_reads_the_replica_and_nothing_else(project: Path, nself: Run) -> None:
    refused = nself("hasura", "replica", "enable", cwd=project)
    assert refused.code == 1
    assert refused.err.splitlines() == [
        "error: the database has no replica for a read-only Hasura to read from",
        "hint: add one first: nself db replica add",
    ]
    assert "HASURA_REPLICA_ENABLED" not in (project / ".env.local").read_text()

    set_env(project, POSTGRES_REPLICAS="replica1")
    enabled = nself("hasura", "replica", "enable", cwd=project)
    assert enabled.code == 0, enabled.output
    said = enabled.out
    url = "https://api-read.local.nself.org/v1/graphql"
    assert f"{url}: queries and subscriptions read replica replica1" in said
    assert "still serves every query sent to it, from the primary" in said
    assert "reads move only when your clients send them to the read-only URL" in said
    assert "mutations sent to the read-only URL fail" in said
    assert "HASURA_GRAPHQL_READ_REPLICA_URLS is not used: Hasura CE ignores read replicas" in said
    assert nself("build", cwd=project).code == 0
    services = compose(project)
    ro, primary = services["hasura-replica"], services["hasura"]
    env = ro["environment"]
    assert isinstance(env, dict)
    assert env["HASURA_GRAPHQL_DATABASE_URL"] == "${DATABASE_REPLICA_URL}"
    assert env["HASURA_GRAPHQL_METADATA_DATABASE_URL"] == "${DATABASE_URL}"  # one metadata
    assert env["HASURA_GRAPHQL_ENABLED_APIS"] == "graphql"  # no metadata API
    assert env["HASURA_GRAPHQL_ENABLE_MAINTENANCE_MODE"] == "true"  # no catalog writes
    assert env["HASURA_GRAPHQL_EVENTS_FETCH_BATCH_SIZE"] == "0"
    assert env["HASURA_GRAPHQL_ASYNC_ACTIONS_FETCH_INTERVAL"] == "0"
    assert env["HASURA_GRAPHQL_ENABLE_CONSOLE"] == "false"
    assert "HASURA_GRAPHQL_READ_REPLICA_URLS" not in env
    assert env["HASURA_GRAPHQL_ADMIN_SECRET"] == "${HASURA_GRAPHQL_ADMIN_SECRET}"
    assert env["HASURA_GRAPHQL_JWT_SECRET"] == "${HASURA_GRAPHQL_JWT_SECRET}"
    assert ro["image"] == primary["image"] and "ports" not in ro
    assert set(ro["depends_on"]) == {"hasura", "postgres-replica1"}  # type: ignore[arg-type]
    site = (project / "nginx/sites/api-read.conf").read_text()
    assert "hasura-replica:8080" in site and "Upgrade" in site  # subscriptions over WebSocket
    urls = json.loads(nself("build", "--json", cwd=project).out)["urls"]
    assert urls["hasura-replica"] == "https://api-read.local.nself.org"

    # Taking away the only replica it reads from is refused while it runs.
    removing = nself("db", "replica", "remove", "replica1", cwd=project)
    assert removing.code == 2
    assert "the read-only Hasura reads from replica1, the only replica" in removing.err
    assert "nself hasura replica disable" in removing.err

    disabled = nself("hasura", "replica", "disable", cwd=project)
    assert disabled.code == 0, disabled.output
    assert nself("build", cwd=project).code == 0
    assert "hasura-replica" not in compose(project)
    assert not (project / "nginx/sites/api-read.conf").exists()


def test_sources_the_read_only_hasura_does_not_move_are_named(project: Path, nself: Run) -> None:
    databases = project / "hasura/metadata/databases"
    databases.mkdir(parents=True)
    (databases / "databases.yaml").write_text(
        "- name: default\n  kind: postgres\n  configuration:\n    connection_info:\n"
        "      database_url:\n        from_env: HASURA_GRAPHQL_DATABASE_URL\n"
        "    read_replicas:\n      - database_url:\n          from_env: REPLICA_URL\n"
        "  tables: []\n"
        "- name: analytics\n  kind: postgres\n  configuration:\n    connection_info:\n"
        "      database_url:\n        from_env: ANALYTICS_DATABASE_URL\n  tables: []\n"
    )
    set_env(project, POSTGRES_REPLICAS="replica1")
    enabled = nself("hasura", "replica", "enable", cwd=project)
    assert enabled.code == 0, enabled.output
    assert "Hasura sources read from the replica: default" in enabled.out
    assert (
        "the Hasura source analytics does not take its URL from HASURA_GRAPHQL_DATABASE_URL"
        in enabled.err
    )
    assert "source default lists read_replicas: Hasura CE accepts and ignores them" in enabled.err
    status = json.loads(nself("hasura", "replica", "status", "--json", cwd=project).out)
    assert status["sources_on_replica"] == ["default"]
    assert status["sources_not_on_replica"] == ["analytics"]
    assert status["read_replica_urls_setting_used"] is False


def test_the_read_only_hasura_reads_a_plugins_source_from_the_replica_too(
    project: Path, nself: Run
) -> None:
    """A plugin's Hasura source (its own role) is read from the replica by the read-only
    Hasura, like the default source: pointed at the primary, a mutation sent to the
    read-only URL would write the plugin's tables."""
    from nself_builtins.plugins import install_folder

    install_folder(project, CATALOGUE / "audit", source="catalogue")
    set_env(project, POSTGRES_REPLICAS="replica1", HASURA_REPLICA_ENABLED="true")
    assert nself("build", cwd=project).code == 0
    # The project's metadata lists the plugin's source, as docs/plugins/security.md says.
    databases = project / "hasura/metadata/databases"
    databases.mkdir(parents=True)
    (databases / "databases.yaml").write_text(
        "- name: default\n  kind: postgres\n  configuration:\n    connection_info:\n"
        "      database_url:\n        from_env: HASURA_GRAPHQL_DATABASE_URL\n  tables: []\n"
        + (project / "hasura/plugins/audit/source.yaml").read_text()
    )
    services = compose(project)
    ro, primary = services["hasura-replica"]["environment"], services["hasura"]["environment"]
    assert isinstance(ro, dict) and isinstance(primary, dict)
    name = "HASURA_PLUGIN_AUDIT_DATABASE_URL"
    assert primary[name] == "${HASURA_PLUGIN_AUDIT_DATABASE_URL}"
    assert ro[name] == "${HASURA_REPLICA_PLUGIN_AUDIT_DATABASE_URL}"
    config = nself_sdk.load_config(project)
    assert "@postgres:5432/nself?" in config.text(name)
    on_replica = config.text("HASURA_REPLICA_PLUGIN_AUDIT_DATABASE_URL")
    assert on_replica == config.text(name).replace("@postgres:", "@postgres-replica1:")
    assert on_replica.startswith("postgres://nself_plugin_audit:")  # the plugin's role still
    assert "HASURA_REPLICA_PLUGIN" not in json.dumps(services["audit"])  # Hasura's only
    status = json.loads(nself("hasura", "replica", "status", "--json", cwd=project).out)
    assert status["sources_on_replica"] == ["default", "plugin_audit"]
    assert status["sources_not_on_replica"] == []


def test_a_source_url_of_the_projects_own_under_hasura_plugin_is_left_as_it_is(
    project: Path, nself: Run
) -> None:
    """A URL the project sets itself under HASURA_PLUGIN_ (no plugin derives it, so there
    is no replica URL for it) is handed to the read-only Hasura unchanged, as before."""
    url = "postgres://u:p@elsewhere:5432/x"
    set_env(
        project,
        POSTGRES_REPLICAS="replica1",
        HASURA_REPLICA_ENABLED="true",
        HASURA_PLUGIN_FOO_DATABASE_URL=url,
    )
    built = nself("build", cwd=project)
    assert built.code == 0, built.output
    ro = compose(project)["hasura-replica"]["environment"]
    assert isinstance(ro, dict)
    assert ro["HASURA_PLUGIN_FOO_DATABASE_URL"] == "${HASURA_PLUGIN_FOO_DATABASE_URL}"


def test_hasura_replica_without_replicas_stops_the_build(project: Path, nself: Run) -> None:
    set_env(project, HASURA_REPLICA_ENABLED="true")
    failed = nself("build", cwd=project)
    assert failed.code == 1
    assert "HASURA_REPLICA_ENABLED=true, but the database has no replica to read from" in failed.err
    assert "nself db replica add" in failed.err


def test_custom_services_go_through_the_pool_when_there_is_one(project: Path, nself: Run) -> None:
    from nself_builtins.database.pool import routes
    from nself_builtins.plugins.store import install_folder

    added = nself("service", "add", "reports", "--template", "fastapi", cwd=project)
    assert added.code == 0, added.output
    config = nself_sdk.load_config(project)
    # Without PgBouncer the pool URL is the database itself.
    assert config.text("CS_1_ENV_DATABASE_URL") == config.text("DATABASE_URL")
    assert config.text("CS_1_ENV_DATABASE_DIRECT_URL") == config.text("DATABASE_URL")

    install_folder(project, CATALOGUE / "pgbouncer")
    assert nself("build", cwd=project).code == 0
    config = nself_sdk.load_config(project)
    assert "@pgbouncer:3820/nself" in config.text("CS_1_ENV_DATABASE_URL")
    assert "@postgres:5432/nself" in config.text("CS_1_ENV_DATABASE_DIRECT_URL")
    found = routes(config, nself_sdk.stack(config))
    assert "reports" in found["pool"]
    assert {"hasura", "auth"} <= set(found["direct"]) and "pgbouncer" not in found["direct"]


def test_env_values_are_set_keeping_every_other_line(tmp_path: Path) -> None:
    path = tmp_path / ".env.local"
    path.write_text('# mine\nA=1\nX=old # note\nB="two\nlines"\nX=again\nC=3')
    path.chmod(0o600)
    set_values(path, {"X": "new value", "NEW": "n", "C": None})
    assert path.read_text() == "# mine\nA=1\nB=\"two\nlines\"\nX='new value'\nNEW=n\n"
    assert path.stat().st_mode & 0o777 == 0o600


def test_doctor_names_the_replication_check_while_the_stack_is_stopped(
    project: Path, nself: Run
) -> None:
    """Not running, without replicas: nothing to warn about, and the check still answers
    (a check that said nothing was 'no check named replication')."""
    assert nself("build", cwd=project).code == 0
    checked = nself("doctor", "--check", "replication", "--json", cwd=project)
    assert checked.code == 0, checked.output
    [finding] = json.loads(checked.out)
    assert finding["level"] == "ok" and finding["message"].startswith("no replicas")

    set_env(project, POSTGRES_REPLICAS="replica1")
    checked = nself("doctor", "--check", "replication", "--json", cwd=project)
    [finding] = json.loads(checked.out)
    assert finding["level"] == "warning" and "not checked" in finding["message"]
