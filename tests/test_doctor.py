"""`nself doctor`: every plugin's `diagnose` checks in one report.

The database checks run against the real PostgreSQL 15 test cluster (NSELF_DB_URL), the
engine check against the real Docker engine; certificates are real ones made on the fly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import pg_cluster
from nself_sdk.testing import Result, set_env
from pg_cluster import Cluster
from test_kernel_plugins import make_distribution, site  # noqa: F401  (fixture)
from test_ssl import make_certificate

Run = Callable[..., Result]
pg, db = pg_cluster.pg, pg_cluster.db


def doctor(nself: Run, folder: Path, *args: str) -> tuple[Result, list[dict[str, str]]]:
    result = nself("doctor", "--json", *args, cwd=folder)
    return result, json.loads(result.out) if result.out.strip() else []


def levels(findings: list[dict[str, str]], check: str) -> list[str]:
    return [f["level"] for f in findings if f["check"] == check]


def test_a_fresh_project(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    result, findings = doctor(nself, project, "--check", "config", "--check", "ssl",
                              "--check", "secrets", "--check", "backups")  # fmt: skip
    assert result.code == 0, result.output
    assert next(f["check"] for f in findings) == "config"  # what everything rests on, first
    assert levels(findings, "config") == ["ok"]
    assert levels(findings, "ssl") == ["ok"]
    assert levels(findings, "secrets") == ["ok"]
    assert levels(findings, "backups") == ["warning"]  # no backup yet
    text = nself("doctor", "--check", "backups", cwd=project)
    assert "! backups" in text.out and "hint: nself db backup" in text.out
    assert "0 errors" in text.out


def test_an_invalid_configuration_is_the_only_finding(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", RATE_LIMIT_AUTH="lots")
    result, findings = doctor(nself, project)
    assert result.code == 1
    assert {f["check"] for f in findings} == {"config"}
    assert "RATE_LIMIT_AUTH='lots' is not a rate" in findings[0]["message"]


def test_stale_files_and_a_bad_certificate(project: Path, nself: Run) -> None:
    make_certificate(project, "old", "local.nself.org", days=-1)
    set_env(
        project, ".env.local", SSL_CERTIFICATE_FILE="old.crt", SSL_CERTIFICATE_KEY_FILE="old.key"
    )
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", NGINX_CLIENT_MAX_BODY_SIZE="5m")
    result, findings = doctor(nself, project, "--check", "config", "--check", "ssl")
    assert result.code == 1
    stale = [f for f in findings if f["level"] == "warning" and f["check"] == "config"]
    assert stale and "nginx/nginx.conf" in stale[0]["message"]
    assert levels(findings, "ssl") == ["error"]
    assert "expired on" in next(f["message"] for f in findings if f["check"] == "ssl")


def test_secrets_outside_local_are_errors_and_never_shown(
    project: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = dict(
        line.split("=", 1)
        for line in (project / ".env.dev").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    monkeypatch.setenv("NSELF_ENV", "staging")
    # Staging refuses the dev stubs already in the configuration check, one line each.
    result, findings = doctor(nself, project)
    assert result.code == 1 and {f["check"] for f in findings} == {"config"}
    assert any("POSTGRES_PASSWORD" in f["message"] for f in findings)
    text = nself("doctor", cwd=project)
    for name, value in dev.items():
        if name.endswith(("PASSWORD", "SECRET", "_KEY")) and len(value) >= 8:
            assert value not in result.output + text.output, name


def test_unknown_check_is_a_usage_error(project: Path, nself: Run) -> None:
    result = nself("doctor", "--check", "nope", cwd=project)
    assert result.code == 2 and "no check named nope" in result.err


def test_the_engine_check(project: Path, nself: Run, docker_engine: None) -> None:
    assert nself("build", cwd=project).code == 0
    result, findings = doctor(nself, project, "--check", "engine")
    assert result.code == 0 and levels(findings, "engine") == ["ok"]
    result, findings = doctor(nself, project, "--check", "services")
    assert levels(findings, "services") == ["warning"]  # this project never started
    assert "not running" in findings[0]["message"]


def test_a_third_party_plugin_joins_the_report(
    site: Path,  # noqa: F811
    project: Path,
    nself: Run,
) -> None:
    code = (
        "from nself_sdk import Finding, hookimpl\n\n@hookimpl\n"
        "def diagnose(config, only):\n"
        "    if only and 'whoami' not in only:\n        return []\n"
        "    return [Finding('whoami', 'error', 'the greeting is missing', 'set it')]\n"
    )
    make_distribution(site, plugin="whoami", code=code)
    result = nself("doctor", "--check", "whoami", cwd=project)
    assert result.code == 1
    assert "✗ whoami" in result.out and "hint: set it" in result.out


@pytest.mark.postgres
def test_migrations_and_backups_on_a_real_database(
    project: Path, nself: Run, pg: Cluster, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(pg.bindir))
    migration = project / "migrations" / "1_notes"
    migration.mkdir(parents=True)
    (migration / "up.sql").write_text("CREATE TABLE notes (id int PRIMARY KEY);\n")
    (migration / "down.sql").write_text("DROP TABLE notes;\n")

    r, findings = doctor(nself, project, "--check", "migrations")
    assert r.code == 0, r.output
    assert levels(findings, "migrations") == ["warning"]
    assert "1 pending: 1_notes" in findings[0]["message"]
    assert nself("db", "migrate", "up", cwd=project).code == 0
    result, findings = doctor(nself, project, "--check", "migrations")
    assert result.code == 0 and levels(findings, "migrations") == ["ok"]
    (migration / "up.sql").write_text("CREATE TABLE notes (id bigint PRIMARY KEY);\n")
    result, findings = doctor(nself, project, "--check", "migrations")
    assert result.code == 1 and "error" in levels(findings, "migrations")

    (migration / "up.sql").write_text("CREATE TABLE notes (id int PRIMARY KEY);\n")
    assert nself("db", "backup", cwd=project).code == 0
    _r, findings = doctor(nself, project, "--check", "backups")
    assert levels(findings, "backups") == ["warning"]
    assert "never been restored" in findings[0]["message"]
    result, findings = doctor(nself, project, "--check", "backups", "--deep")
    assert result.code == 0, result.output
    assert levels(findings, "backups") == ["ok"] and "restored as a test" in findings[0]["message"]
    _r, findings = doctor(nself, project, "--check", "backups")  # the proof is remembered
    assert levels(findings, "backups") == ["ok"]
    dump = next((project / "backups").glob("*.dump"))
    dump.write_bytes(dump.read_bytes()[:-20])
    result, findings = doctor(nself, project, "--check", "backups")
    assert result.code == 1 and levels(findings, "backups") == ["error"]


@pytest.mark.postgres
def test_plugin_migrations_come_from_the_stack_for_doctor_and_commands(
    site: Path,  # noqa: F811
    project: Path,
    nself: Run,
    pg: Cluster,
    db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`nself doctor` and `nself db migrate` see the same migrations: the project's files
    and those the plugins contribute (the stack's), switched by the plugin's setting."""
    monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(pg.bindir))
    code = (
        "from nself_sdk import Migration, Setting, hookimpl\n\n"
        "@hookimpl\ndef declare_settings():\n"
        "    return [Setting('NOTES_ENABLED', 'true', 'Notes tables.')]\n\n"
        "@hookimpl\ndef contribute_migrations(config):\n"
        "    if not config.flag('NOTES_ENABLED'):\n        return []\n"
        "    return [Migration('1', 'notes', 'CREATE TABLE plugin_notes (id int);',\n"
        "                      'DROP TABLE plugin_notes;', source='notes')]\n"
    )
    make_distribution(site, plugin="notes", code=code)
    r, findings = doctor(nself, project, "--check", "migrations")
    assert r.code == 0, r.output
    assert levels(findings, "migrations") == ["warning"]
    assert "1 pending: 1_notes" in findings[0]["message"]
    status = nself("db", "migrate", "status", "--json", cwd=project)
    rows = json.loads(status.out)["migrations"]
    assert [(r["source"], r["name"], r["state"]) for r in rows] == [("notes", "notes", "pending")]
    assert nself("db", "migrate", "up", cwd=project).code == 0
    assert ("plugin_notes",) in pg.sql("SELECT tablename FROM pg_tables", db)
    result, findings = doctor(nself, project, "--check", "migrations")
    assert result.code == 0 and levels(findings, "migrations") == ["ok"]
    set_env(project, ".env.local", NOTES_ENABLED="false")  # applied, but no longer in the stack
    result, findings = doctor(nself, project, "--check", "migrations")
    assert result.code == 1 and "is gone" in findings[0]["message"]
    assert nself("db", "migrate", "verify", cwd=project).code == 1


def test_check_names_are_checked(project: Path, nself: Run) -> None:
    result = nself("doctor", "--check", "ssl", "--check", "typo", cwd=project)
    assert result.code == 2 and "no check named typo" in result.err
    result = nself("doctor", "--check", "nginx", cwd=project)
    assert result.code == 2 and "--deep" in result.err


def test_the_disk_check(project: Path, nself: Run, docker_engine: None) -> None:
    import os

    result, findings = doctor(nself, project, "--check", "disk")
    assert result.code in (0, 1) and findings and {f["check"] for f in findings} == {"disk"}
    mine = next(f for f in findings if "the project" in f["message"])
    st = os.statvfs(project)
    free_gib = st.f_bavail * st.f_frsize / 1024**3
    said = float(mine["message"].split(" GiB free")[0])
    assert abs(said - free_gib) < 1.0  # what statvfs says, give or take other writers
    expected = "ok" if free_gib >= 5 and st.f_bavail / st.f_blocks >= 0.15 else mine["level"]
    assert mine["level"] == expected


def test_the_ports_check(project: Path, nself: Run, docker_engine: None) -> None:
    import socket

    from docker_helpers import free_port

    http = free_port()
    set_env(project, ".env.local", NGINX_HTTP_PORT=str(http), NGINX_HTTPS_PORT=str(free_port()))
    assert nself("build", cwd=project).code == 0
    result, findings = doctor(nself, project, "--check", "ports")
    assert result.code == 0 and levels(findings, "ports") == ["ok"]
    with socket.socket() as squatter:  # another program holds the HTTP port
        squatter.bind(("127.0.0.1", http))
        squatter.listen()
        result, findings = doctor(nself, project, "--check", "ports")
    assert result.code == 1 and levels(findings, "ports") == ["error"]
    assert f"host port {http}" in findings[0]["message"]
    assert "NGINX_HTTP_PORT" in (findings[0]["hint"] or "")


@pytest.mark.docker
def test_prod_without_a_server_is_not_this_machines_dev_stack(
    tmp_path: Path, nself: Run, docker_engine: None
) -> None:
    """`doctor --env prod` on a laptop that runs the dev stack: there is no prod server,
    and dev's containers are never reported as prod's (`status` and `health` neither)."""

    from docker_helpers import standin_project
    from kernel_helpers import mail_server

    with standin_project(nself, tmp_path, "nselfdoc") as folder:
        started = nself("start", "postgres", "--timeout", "120", cwd=folder)
        assert started.code == 0, started.output
        assert nself("secrets", "generate", "--env", "prod", cwd=folder).code == 0
        mail_server(folder)
        set_env(folder, ".env.prod", HASURA_ENABLED="false", AUTH_ENABLED="false",
                NGINX_HTTP_PORT="18080", NGINX_HTTPS_PORT="18443")  # fmt: skip
        result, findings = doctor(nself, folder, "--env", "prod")
        assert result.code == 1, result.output
        deploy = [f for f in findings if f["check"] == "deploy"]
        assert [f["level"] for f in deploy] == ["error"], findings
        assert (
            "no prod server is configured: DEPLOY_HOST is not set in .env.prod"
            in (deploy[0]["message"])
        )
        services = [f for f in findings if f["check"] == "services"]
        assert services and all(f["level"] != "ok" for f in services), services
        assert "no prod stack runs on this machine" in services[0]["message"], services
        assert not {f["check"] for f in findings} & {"engine", "ports", "disk"}  # this laptop's
        for argv in (("status",), ("health",)):
            shown = nself(*argv, "--env", "prod", cwd=folder)
            assert shown.code == 1 and "no prod stack runs on this machine" in shown.err, argv
            assert "DEPLOY_HOST" in shown.err
        # switched to prod, stop and down never take dev's containers (or volumes) for prod's
        assert nself("env", "switch", "prod", cwd=folder).code == 0
        for argv in (("stop",), ("down", "--volumes", "--confirm")):
            refused = nself(*argv, cwd=folder)
            assert refused.code == 1 and "no prod stack runs on this machine" in refused.err, argv
        assert nself("env", "switch", "local", cwd=folder).code == 0
        # the dev stack itself is looked at as before
        assert nself("health", "postgres", cwd=folder).code == 0


@pytest.mark.docker
def test_prod_without_a_server_on_a_machine_running_nothing(
    project: Path, nself: Run, docker_engine: None
) -> None:
    """Nothing of the project runs here: prod is still not 'a stack to start' on this
    laptop (`nself start` runs local's), and the stale files' hint builds prod."""
    from kernel_helpers import mail_server

    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    mail_server(project)
    _result, findings = doctor(nself, project, "--env", "prod")
    services = [f for f in findings if f["check"] == "services"]
    assert [f["level"] for f in services] == ["warning"], services
    assert (
        "no prod stack runs on this machine, and no prod server is configured"
        in (services[0]["message"])
    )
    assert "nself start" not in (services[0]["hint"] or "")
    assert not {f["check"] for f in findings} & {"engine", "ports", "disk"}  # this laptop's
    stale = [f for f in findings if f["message"].startswith("generated files are stale")]
    assert stale and stale[0]["hint"] == "run `nself build --env prod`", stale
    for argv in (("status",), ("health",), ("logs", "postgres")):
        shown = nself(*argv, "--env", "prod", cwd=project)
        assert shown.code == 1 and "no prod server is configured" in shown.err, shown.output
