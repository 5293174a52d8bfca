"""`nself db seed` and `nself db reset` against a real PostgreSQL 15 cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

import pg_cluster
from pg_cluster import Cluster

pytestmark = pytest.mark.postgres
pg, db = pg_cluster.pg, pg_cluster.db


@pytest.fixture
def target(project: Path, pg: Cluster, db: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
    folder = project / "migrations" / "1_colors"
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text("CREATE TABLE colors (name text PRIMARY KEY);")
    seeds = project / "seeds"
    (seeds / "01_base.sql").write_text(
        "-- nself:prod-safe\nINSERT INTO colors VALUES ('red') ON CONFLICT DO NOTHING;\n"
    )
    (seeds / "02_demo.sql").write_text(
        "INSERT INTO colors VALUES ('demo-only')\n ON CONFLICT DO NOTHING;\n"
    )
    return project


def colors(pg: Cluster, db: str) -> list[str]:
    return [r[0] for r in pg.sql("SELECT name FROM colors ORDER BY 1", db)]


def test_seed_runs_in_order_and_prod_runs_only_safe_files(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    assert nself("db", "migrate", "up", cwd=target).code == 0
    r = nself("db", "seed", "--env", "prod", cwd=target)
    assert r.code == 4 and "needs --confirm" in r.err
    r = nself("db", "seed", "--env", "prod", "--dry-run", cwd=target)
    assert r.code == 0 and "would run seeds/01_base.sql" in r.out and "02_demo" not in r.out
    r = nself("db", "seed", "--env", "prod", "--confirm", cwd=target)
    assert r.code == 0, r.output
    assert colors(pg, db) == ["red"]
    r = nself("db", "seed", cwd=target)
    assert r.code == 0, r.output
    assert colors(pg, db) == ["demo-only", "red"]
    # a failing seed file is rolled back and named
    (target / "seeds" / "03_bad.sql").write_text(
        "INSERT INTO colors VALUES ('half');\nINSERT INTO nope VALUES (1);\n"
    )
    r = nself("db", "seed", cwd=target)
    assert r.code == 1 and "seeds/03_bad.sql failed" in r.err
    assert "half" not in colors(pg, db)


def test_reset_is_dev_only_and_rebuilds_from_migrations(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    assert nself("db", "migrate", "up", cwd=target).code == 0
    pg.sql("CREATE TABLE stray (id int); INSERT INTO colors VALUES ('blue')", db)
    r = nself("db", "reset", "--env", "staging", "--yes", cwd=target)
    assert r.code == 2 and "only works on the local dev database" in r.err
    r = nself("db", "reset", "--yes", cwd=target)
    assert r.code == 0, r.output
    tables = {t for (t,) in pg.sql("SELECT tablename FROM pg_tables WHERE schemaname='public'", db)}
    assert "stray" not in tables and "colors" in tables
    assert colors(pg, db) == ["demo-only", "red"]


def test_shell_runs_psql_on_the_database(target: Path, pg: Cluster, db: str) -> None:
    import os
    import subprocess
    import sys

    nself = str(Path(sys.executable).parent / "nself")
    result = subprocess.run(
        [nself, "db", "shell"],
        cwd=target,
        input="SELECT 40 + 2 AS answer, current_database();\n",
        capture_output=True,
        text=True,
        env={**os.environ, "NSELF_PG_BINDIR": str(pg.bindir)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "42" in result.stdout and db in result.stdout


def test_a_seed_that_ends_its_own_transaction_is_refused_before_any_seed_runs(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    """A COMMIT in a seed would keep its first half while nself said it was rolled back."""
    assert nself("db", "migrate", "up", cwd=target).code == 0
    (target / "seeds" / "03_half.sql").write_text(
        "INSERT INTO colors VALUES ('half');\nCOMMIT;\nINSERT INTO nope VALUES (1);\n"
    )
    r = nself("db", "seed", cwd=target)
    assert r.code == 1 and "seeds/03_half.sql:2: COMMIT inside a seed file" in r.err, r.output
    assert colors(pg, db) == []  # not even the earlier files ran


def test_the_prod_safe_marker_counts_only_as_a_comment(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    assert nself("db", "migrate", "up", cwd=target).code == 0
    (target / "seeds" / "02_demo.sql").write_text(
        "INSERT INTO colors VALUES ('\n-- nself:prod-safe\n') ON CONFLICT DO NOTHING;\n"
    )
    r = nself("db", "seed", "--env", "prod", "--dry-run", cwd=target)
    assert r.code == 0 and "01_base" in r.out and "02_demo" not in r.out, r.output
