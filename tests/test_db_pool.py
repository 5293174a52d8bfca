"""`nself db pool status` against a real PgBouncer (issue #15).

The catalogue's pgbouncer bundle runs with the PgBouncer stand-in (Debian's pgbouncer in
the image contract of edoburu/pgbouncer, tests/standins/pgbouncer.Dockerfile) in front of
the postgres stand-in: the bundle is installed from a copy whose image is the stand-in,
everything else as published. Clients connect through the pool on the project network.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import standin, standin_project
from nself_builtins.plugins.store import install_folder
from nself_sdk.testing import Result, set_env

CATALOGUE = Path(__file__).resolve().parents[1] / "plugin_registry" / "catalogue"
Run = Callable[..., Result]


def bundle_with_standin(tmp_path: Path) -> Path:
    """The catalogue's pgbouncer bundle with its image replaced by the stand-in."""
    copy = tmp_path / "pgbouncer-bundle"
    shutil.copytree(CATALOGUE / "pgbouncer", copy)
    manifest = copy / "plugin.toml"
    text = manifest.read_text()
    assert 'image = "edoburu/pgbouncer:v1.23.1-p3"' in text
    manifest.write_text(text.replace("edoburu/pgbouncer:v1.23.1-p3", standin("pgbouncer")))
    return copy


def test_pool_status_without_pgbouncer_says_how_to_install_it(project: Path, nself: Run) -> None:
    result = nself("db", "pool", "status", cwd=project)
    assert result.code == 1
    assert result.err.splitlines() == [
        "error: the PgBouncer plugin is not installed in this project",
        "hint: install it: nself plugin install pgbouncer && nself build && nself start",
    ]


def test_pool_url_is_the_database_without_pgbouncer_and_the_pool_with_it(
    project: Path, nself: Run, tmp_path: Path
) -> None:
    from nself_sdk import load_config

    config = load_config(project)
    assert config.text("DATABASE_POOL_URL") == config.text("DATABASE_URL")
    install_folder(project, bundle_with_standin(tmp_path))
    config = load_config(project)
    pool = config.text("DATABASE_POOL_URL")
    assert pool.startswith("postgres://postgres:") and "@pgbouncer:3820/nself" in pool
    assert config.text("DATABASE_URL").endswith("@postgres:5432/nself?sslmode=disable")


@pytest.fixture
def pooled(tmp_path: Path, nself: Run, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("NSELF_DB_URL", raising=False)
    pool = {"PGBOUNCER_POOL_SIZE": "7", "PGBOUNCER_MAX_CLIENT_CONN": "120"}
    with standin_project(nself, tmp_path, "nselfpool", **pool) as folder:
        install_folder(folder, bundle_with_standin(tmp_path))
        started = nself("start", "postgres", "pgbouncer", "--timeout", "120", cwd=folder)
        assert started.code == 0, started.output
        yield folder


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_pool_status_reads_the_running_pgbouncer(pooled: Path, nself: Run) -> None:
    folder = pooled
    # A client through the pool (transaction pooling, SCRAM as the stack's user).
    through = nself(
        "exec", "pgbouncer", "--", "sh", "-c",
        'PGPASSWORD="$DB_PASSWORD" psql -X -h 127.0.0.1 -p 3820 -U "$DB_USER" -d nself'
        " -Atc 'SELECT 40 + 2'",
        cwd=folder,
    )  # fmt: skip
    assert through.code == 0 and through.out.strip() == "42", through.output

    result = nself("db", "pool", "status", "--json", cwd=folder)
    assert result.code == 0, result.output
    status = json.loads(result.out)
    # The pool the configuration asked for.
    assert status["config"]["pool_mode"] == "transaction"
    assert status["config"]["default_pool_size"] == "7"
    assert status["config"]["max_client_conn"] == "120"
    assert status["drift"] == []
    pools = {(p["database"], p["user"]): p for p in status["pools"]}
    assert pools[("nself", "postgres")]["pool_mode"] == "transaction"
    assert pools[("nself", "postgres")]["cl_waiting"] == 0
    stats = {s["database"]: s for s in status["stats"]}
    assert stats["nself"]["total_query_count"] >= 1
    assert "avg_wait_time" in stats["nself"]
    assert "hasura" not in status["routes"]["pool"]

    text = nself("db", "pool", "status", cwd=folder)
    assert text.code == 0, text.output
    assert "PgBouncer: pool_mode=transaction default_pool_size=7 max_client_conn=120" in text.out
    assert any(
        line.split()[:3] == ["nself", "postgres", "transaction"] for line in text.out.splitlines()
    )

    # A setting changed but not applied: said, with how to apply it.
    set_env(folder, ".env.local", PGBOUNCER_POOL_SIZE="9")
    drift = nself("db", "pool", "status", cwd=folder)
    assert drift.code == 0, drift.output
    assert "PGBOUNCER_POOL_SIZE=9, but the running PgBouncer uses default_pool_size=7" in drift.err
