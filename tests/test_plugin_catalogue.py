"""The free catalogue (plugin_registry/catalogue): real images, checked with the real tools.

PgBouncer's rendered config runs in the real ``pgbouncer`` binary in front of a real
PostgreSQL; the audit plugin's migrations run up and down on it; the ntfy route passes
``nginx -t`` in the nginx stand-in; the whole stack passes ``docker compose config``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from docker_helpers import standin
from nself_builtins.plugins.store import install_folder, read_lock
from nself_builtins.shared.manifest import lint_bundle
from nself_sdk.testing import Result, set_env

CATALOGUE = Path(__file__).resolve().parents[1] / "plugin_registry" / "catalogue"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
Run = Callable[..., Result]


def compose_cmd() -> list[str]:
    """Compose v2 from this venv (the docker CLI plugin link is shared by every checkout)."""
    beside = Path(sys.executable).with_name("docker-compose")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("docker-compose")
    if found:
        return [found]
    if shutil.which("docker") is None:
        pytest.skip("neither docker-compose nor docker is installed")
    return ["docker", "compose"]


@pytest.mark.parametrize("name", ["pgbouncer", "ntfy", "audit"])
def test_catalogue_bundles_are_clean(name: str) -> None:
    bundle, problems = lint_bundle(CATALOGUE / name)
    assert bundle is not None and problems == [], [p.message for p in problems]
    assert bundle.manifest.tier == "free"
    assert bundle.manifest.service is not None
    image = bundle.manifest.service.image
    assert re.search(r":v?\d+\.\d+", image), image  # a real, pinned image


@pytest.fixture
def full_project(project: Path) -> Path:
    for name in ("pgbouncer", "ntfy", "audit"):
        install_folder(project, CATALOGUE / name, source="catalogue")
    return project


def test_catalogue_stack_builds_and_compose_accepts_it(full_project: Path, nself: Run) -> None:
    lock = read_lock(full_project)
    assert {n: e.port for n, e in lock.items()} == {"pgbouncer": 3820, "ntfy": 3821, "audit": 3822}
    result = nself("build", cwd=full_project)
    assert result.code == 0, result.output
    compose = yaml.safe_load((full_project / "docker-compose.yml").read_text())
    services = compose["services"]
    pgb = services["pgbouncer"]
    assert pgb["image"] == "edoburu/pgbouncer:v1.23.1-p3"
    assert pgb["labels"]["org.nself.role"] == "plugin"
    assert pgb["environment"]["DB_PASSWORD"] == "${POSTGRES_PASSWORD}"  # from .env.computed
    assert "ports" not in pgb  # never published
    assert pgb["volumes"] == [
        "./plugin-files/pgbouncer/config/pgbouncer.ini:/etc/pgbouncer/pgbouncer.ini:ro"
    ]
    assert pgb["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert pgb["healthcheck"]["test"][:3] == ["CMD", "pg_isready", "-q"]  # exec form
    ntfy = services["ntfy"]
    assert "plugin_ntfy_cache:/var/cache/ntfy" in ntfy["volumes"]
    assert "plugin_ntfy_data" in compose["volumes"]
    assert services["audit"]["environment"]["PGRST_SERVER_PORT"] == "${AUDIT_PORT}"
    computed = (full_project / ".env.computed").read_text()
    assert "AUDIT_PORT=3822" in computed and "PGBOUNCER_HOST=pgbouncer" in computed
    site = (full_project / "nginx/sites/ntfy.conf").read_text()
    assert "server_name ntfy.local.nself.org;" in site
    assert "proxy_buffering off;" in site and "proxy_set_header Upgrade $http_upgrade;" in site
    assert "auth_basic_user_file" in (full_project / "nginx/sites/audit.conf").read_text()
    metadata = yaml.safe_load((full_project / "hasura/plugins/audit/tables.yaml").read_text())
    assert metadata[0]["table"] == {"schema": "audit", "name": "audit_log"}
    # The plugin's service logs in as its own role, never as the superuser.
    assert services["audit"]["environment"]["PGRST_DB_URI"] == "${AUDIT_DATABASE_URL}"
    assert "AUDIT_DATABASE_URL='postgres://nself_plugin_audit:" in computed
    # Hasura serves the plugin's tables through a source of their own, logged in as the
    # plugin's role (its URL given to Hasura only), the core tables as before.
    hasura = services["hasura"]["environment"]
    assert hasura["HASURA_PLUGIN_AUDIT_DATABASE_URL"] == "${HASURA_PLUGIN_AUDIT_DATABASE_URL}"
    assert hasura["HASURA_GRAPHQL_DATABASE_URL"] == "${DATABASE_URL}"
    assert "HASURA_PLUGIN_AUDIT_DATABASE_URL='postgres://nself_plugin_audit:" in computed
    assert not any("HASURA_PLUGIN" in k for k in services["audit"]["environment"])
    source = yaml.safe_load((full_project / "hasura/plugins/audit/source.yaml").read_text())
    assert source == [
        {
            "name": "plugin_audit",
            "kind": "postgres",
            "configuration": {
                "connection_info": {
                    "database_url": {"from_env": "HASURA_PLUGIN_AUDIT_DATABASE_URL"}
                }
            },
            "tables": "!include ../../plugins/audit/tables.yaml",
        }
    ]
    databases = full_project / "hasura/metadata/databases"
    assert (databases / "../../plugins/audit/tables.yaml").resolve() == (
        full_project / "hasura/plugins/audit/tables.yaml"
    ).resolve()
    check = subprocess.run(
        [*compose_cmd(), "--env-file", ".env.computed", "config", "-q"],
        cwd=full_project,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def test_pgbouncer_settings_reach_the_config(project: Path, nself: Run) -> None:
    install_folder(project, CATALOGUE / "pgbouncer")
    set_env(project, PGBOUNCER_POOL_SIZE="40", PGBOUNCER_DEFAULT_POOL_MODE="session")
    assert nself("build", cwd=project).code == 0
    ini = (project / "plugin-files/pgbouncer/config/pgbouncer.ini").read_text()
    assert "default_pool_size = 40" in ini and "pool_mode = session" in ini
    assert "max_client_conn = 1000" in ini and "listen_port = 3820" in ini
    password = next(
        line.split("=", 1)[1]
        for line in (project / ".env.dev").read_text().splitlines()
        if line.startswith("POSTGRES_PASSWORD=")
    )
    assert password not in ini


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "PGBOUNCER_DEFAULT_POOL_MODE",
            "sessions",
            "is not one of session, transaction, statement",
        ),
        ("PGBOUNCER_POOL_SIZE", "lots", "'lots' is not a whole number"),
        ("PGBOUNCER_PORT", "5432", "outside the plugin port block 3820-3849"),
    ],
)
def test_bad_pgbouncer_settings_stop_the_build(
    project: Path, nself: Run, name: str, value: str, expected: str
) -> None:
    install_folder(project, CATALOGUE / "pgbouncer")
    set_env(project, **{name: value})
    result = nself("build", cwd=project)
    assert result.code == 1 and expected in result.err, result.err
    assert ".env.local" in result.err  # names the file that set it


# -- real PostgreSQL and PgBouncer ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def as_service_user(argv: list[str]) -> list[str]:
    """PostgreSQL and PgBouncer refuse to run as root: use the postgres account then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@dataclass
class Cluster:
    folder: Path
    port: int
    password: str

    def psql(self, sql: str, port: int | None = None, db: str = "postgres") -> str:
        env = {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5"}
        done = subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(port or self.port), "-U", "postgres", "-d", db,
             "-c", sql],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"psql failed: {done.stderr}")
        return done.stdout.strip()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries are not installed")
    folder = Path(tempfile.mkdtemp(prefix="nself-pgb-", dir="/tmp"))
    folder.chmod(0o755)
    password = "pw-" + os.urandom(8).hex()
    (folder / "pw").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(folder / "pw", "postgres", "postgres")
    port = free_port()
    data = folder / "data"
    subprocess.run(
        as_service_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                         "--auth=scram-sha-256", f"--pwfile={folder / 'pw'}", "-E", "UTF8"]),
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        as_service_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l",
                         str(folder / "pg.log"), "-o",
                         f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield Cluster(folder, port, password)
    finally:
        subprocess.run(
            as_service_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


def test_rendered_pgbouncer_ini_runs_in_the_real_pgbouncer(
    project: Path, nself: Run, cluster: Cluster
) -> None:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.skip("pgbouncer is not installed (scripts/test installs it)")
    install_folder(project, CATALOGUE / "pgbouncer")
    assert nself("build", cwd=project).code == 0
    rendered = (project / "plugin-files/pgbouncer/config/pgbouncer.ini").read_text()
    # Only what differs between the container and this machine changes: where PostgreSQL
    # and the auth file are, and where to listen. Everything nself rendered stays.
    port = free_port()
    userlist = cluster.folder / "userlist.txt"
    userlist.write_text(f'"postgres" "{cluster.password}"\n')
    ini = (
        rendered.replace("host=postgres port=5432", f"host=127.0.0.1 port={cluster.port}")
        .replace("listen_addr = 0.0.0.0", "listen_addr = 127.0.0.1")
        .replace("listen_port = 3820", f"listen_port = {port}")
        .replace("auth_file = /etc/pgbouncer/userlist.txt", f"auth_file = {userlist}")
    )
    assert ini.count(str(cluster.port)) == 1 and ini.count(str(port)) == 1
    config = cluster.folder / "pgbouncer.ini"
    config.write_text(ini + f"pidfile = {cluster.folder}/pgbouncer.pid\n")
    if os.geteuid() == 0:
        for path in (userlist, config):
            shutil.chown(path, "postgres", "postgres")
    proc = subprocess.Popen(
        as_service_user([binary, str(config)]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = proc.stdout.read().decode() if proc.stdout else ""
                    raise AssertionError(f"pgbouncer did not start: {output}") from None
                time.sleep(0.05)
        # A query through the pool, authenticated with SCRAM as the stack's user.
        assert cluster.psql("SELECT 40 + 2", port=port) == "42"
        shown = cluster.psql("SHOW CONFIG", port=port, db="pgbouncer")
        values = dict(line.split("|")[:2] for line in shown.splitlines())
        assert values["pool_mode"] == "transaction"
        assert values["default_pool_size"] == "25"
        assert values["max_client_conn"] == "1000"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.postgres
def test_audit_migrations_run_up_and_down_as_its_own_role(
    project: Path, nself: Run, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_folder(project, CATALOGUE / "audit")
    cluster.psql("CREATE DATABASE audit_test")
    url = f"postgres://postgres:{cluster.password}@127.0.0.1:{cluster.port}/audit_test"
    monkeypatch.setenv("NSELF_DB_URL", url)
    try:
        assert nself("secrets", "generate", cwd=project).code == 0
        up = nself("db", "migrate", "up", cwd=project)
        assert up.code == 0, up.output
        assert (
            cluster.psql(
                "SELECT schemaname || '.' || tablename || ' ' || tableowner FROM pg_tables"
                " WHERE tablename = 'audit_log'",
                db="audit_test",
            )
            == "audit.audit_log nself_plugin_audit"
        )
        cluster.psql(
            "CREATE TABLE orders (id int PRIMARY KEY, total int);"
            "CREATE TRIGGER audit_capture AFTER INSERT OR UPDATE OR DELETE ON public.orders"
            " FOR EACH ROW EXECUTE FUNCTION audit.audit_capture();"
            "INSERT INTO orders VALUES (1, 10); UPDATE orders SET total = 12 WHERE id = 1;"
            "DELETE FROM orders;",
            db="audit_test",
        )
        rows = cluster.psql(
            "SELECT operation, row_before->>'total', row_after->>'total' FROM audit.audit_log"
            " ORDER BY id",
            db="audit_test",
        )
        assert rows.splitlines() == ["INSERT||10", "UPDATE|10|12", "DELETE|12|"]
        assert (
            cluster.psql(
                "SELECT has_table_privilege('nself_plugin_audit', 'orders', 'SELECT'),"
                " (SELECT rolsuper FROM pg_roles WHERE rolname = 'nself_plugin_audit')",
                db="audit_test",
            )
            == "f|f"
        )
        # PostgREST's pre-request check: only GETs of audit_reader tokens.
        checks = cluster.psql(
            "SELECT set_config('request.method', 'GET', false),"
            " set_config('request.jwt.claims',"
            ' \'{"https://hasura.io/jwt/claims": {"x-hasura-default-role": "audit_reader"}}\','
            " false); SELECT audit.check_reader(); SELECT 'passed'",
            db="audit_test",
        )
        assert checks.splitlines()[-1] == "passed"
        refused = subprocess.run(
            [str(PG_BIN / "psql"), url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c",
             "SELECT set_config('request.method', 'POST', false); SELECT audit.check_reader()"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert refused.returncode != 0 and "read-only" in refused.stderr
        cluster.psql("DROP TABLE orders", db="audit_test")
        down = nself("db", "migrate", "down", cwd=project)
        assert down.code == 0, down.output
        assert cluster.psql("SELECT to_regclass('audit.audit_log') IS NULL", db="audit_test") == "t"
    finally:
        cluster.psql("DROP DATABASE IF EXISTS audit_test")
        cluster.psql("DROP ROLE IF EXISTS nself_plugin_audit")


@pytest.mark.docker
def test_ntfy_route_passes_nginx_t(full_project: Path, nself: Run, docker_engine: None) -> None:
    assert nself("build", cwd=full_project).code == 0
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none",
         "-v", f"{full_project / 'nginx'}:/etc/nginx/nself:ro",
         standin("nginx"), "nginx", "-t", "-c", "/etc/nginx/nself/nginx.conf"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr
