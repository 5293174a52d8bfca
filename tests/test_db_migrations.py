"""`nself db migrate` against a real PostgreSQL 15 cluster (see pg_cluster.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pg_cluster
from nself_builtins.database.migrations import Item, ordered
from pg_cluster import Cluster

pytestmark = pytest.mark.postgres
pg, db = pg_cluster.pg, pg_cluster.db  # the session cluster and a fresh database
NSELF = str(Path(sys.executable).parent / "nself")


def write(project: Path, folder: str, up: str, down: str | None = None) -> Path:
    path = project / "migrations" / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / "up.sql").write_text(up)
    if down is not None:
        (path / "down.sql").write_text(down)
    return path


@pytest.fixture
def target(project: Path, pg: Cluster, db: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
    return project


def tables(pg: Cluster, db: str) -> set[str]:
    return {r[0] for r in pg.sql("SELECT tablename FROM pg_tables WHERE schemaname='public'", db)}


def history(pg: Cluster, db: str) -> list[tuple[str, str, str]]:
    return [
        (r[0], r[1], r[2])
        for r in pg.sql("SELECT version, name, state FROM np_schema_migrations ORDER BY seq", db)
    ]


def test_up_applies_records_and_is_idempotent(target: Path, nself, pg: Cluster, db: str) -> None:
    write(target, "1_users", "CREATE TABLE users (id int primary key);", "DROP TABLE users;")
    write(target, "2_posts", "CREATE TABLE posts (id int); INSERT INTO posts VALUES (1);")
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 0, r.output
    assert {"users", "posts"} <= tables(pg, db)
    rows = pg.sql(
        "SELECT version, sha256, applied_by, db_user FROM np_schema_migrations ORDER BY seq", db
    )
    assert [row[0] for row in rows] == ["1", "2"]
    assert all(len(row[1]) == 64 and "@" in row[2] and row[3] == "postgres" for row in rows)
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 0 and "up to date" in r.output
    assert pg.sql("SELECT count(*) FROM posts", db) == [(1,)]
    r = nself("db", "migrate", "status", "--json", cwd=target)
    assert r.code == 0 and '"state": "applied"' in r.out


def test_tampered_file_blocks_everything(target: Path, nself, pg: Cluster, db: str) -> None:
    write(target, "1_users", "CREATE TABLE users (id int);")
    assert nself("db", "migrate", "up", cwd=target).code == 0
    (target / "migrations/1_users/up.sql").write_text("CREATE TABLE users (id bigint);")
    write(target, "2_posts", "CREATE TABLE posts (id int);")
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 1
    assert "migrations/1_users/up.sql changed after it was applied" in r.err
    assert "posts" not in tables(pg, db)  # nothing ran
    assert nself("db", "migrate", "verify", cwd=target).code == 1
    assert "Traceback" not in r.output
    # repair is a dry run until --yes, and is audited
    r = nself("db", "migrate", "repair", cwd=target)
    assert r.code == 0 and "would" in r.out
    assert nself("db", "migrate", "up", cwd=target).code == 1
    r = nself("db", "migrate", "repair", "--yes", "--reason", "fixed a typo", cwd=target)
    assert r.code == 0, r.output
    log = pg.sql(
        "SELECT action, detail FROM np_schema_migrations_log WHERE action LIKE 'repair%'", db
    )
    assert log and "fixed a typo" in log[0][1]
    assert nself("db", "migrate", "up", cwd=target).code == 0
    assert "posts" in tables(pg, db)


def test_vanished_file_blocks(target: Path, nself, pg: Cluster, db: str) -> None:
    folder = write(target, "1_users", "CREATE TABLE users (id int);")
    assert nself("db", "migrate", "up", cwd=target).code == 0
    (folder / "up.sql").unlink()
    folder.rmdir()
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 1 and "migrations/1_users/up.sql was applied on" in r.err and "gone" in r.err


def test_new_file_sorting_before_applied_ones_blocks(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    write(target, "20_b", "CREATE TABLE b (id int);")
    assert nself("db", "migrate", "up", cwd=target).code == 0
    write(target, "10_a", "CREATE TABLE a (id int);")
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 1
    assert "migrations/10_a/up.sql is new but sorts before migrations already applied" in r.err
    assert "a" not in tables(pg, db)


def test_failing_migration_leaves_schema_and_history_unchanged(
    target: Path,
    nself,
    pg: Cluster,
    db: str,
) -> None:
    write(target, "1_ok", "CREATE TABLE ok (id int);")
    write(target, "2_bad", "CREATE TABLE half (id int);\nINSERT INTO ok VALUES (1);\nSELECT 1/0;")
    write(target, "3_later", "CREATE TABLE later (id int);")
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 1
    assert "migrations/2_bad/up.sql failed: division by zero" in r.err
    assert "rolled back" in r.err
    assert tables(pg, db) == {"ok", "np_schema_migrations", "np_schema_migrations_log"}
    assert pg.sql("SELECT count(*) FROM ok", db) == [(0,)]
    assert history(pg, db) == [("1", "ok", "applied")]


def test_up_to_and_down_steps(target: Path, nself, pg: Cluster, db: str) -> None:
    for n in (1, 2, 3):
        write(target, f"{n}_t{n}", f"CREATE TABLE t{n} (id int);", f"DROP TABLE t{n};")
    assert nself("db", "migrate", "up", "--to", "2", cwd=target).code == 0
    assert [h[0] for h in history(pg, db)] == ["1", "2"]
    assert nself("db", "migrate", "up", cwd=target).code == 0
    r = nself("db", "migrate", "down", "--steps", "2", "--dry-run", cwd=target)
    assert r.code == 0 and "would revert 3_t3" in r.out and len(history(pg, db)) == 3
    assert nself("db", "migrate", "down", "--steps", "2", cwd=target).code == 0
    assert [h[0] for h in history(pg, db)] == ["1"]
    assert "t3" not in tables(pg, db) and "t1" in tables(pg, db)
    (target / "migrations/1_t1/down.sql").unlink()
    r = nself("db", "migrate", "down", cwd=target)
    assert r.code == 1 and "migrations/1_t1/up.sql: there is no down.sql" in r.err


def test_a_down_sql_that_ends_its_own_transaction_is_refused_before_anything_reverts(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    """down.sql runs in one transaction: a COMMIT inside kept its first half (a table
    dropped) while nself said it was rolled back and the migration still applied."""
    write(target, "1_a", "CREATE TABLE a (id int);", "DROP TABLE a;\nCOMMIT;\nDROP TABLE nope;\n")
    write(target, "2_b", "CREATE TABLE b (id int);", "DROP TABLE b;")
    assert nself("db", "migrate", "up", cwd=target).code == 0
    r = nself("db", "migrate", "down", "--steps", "2", cwd=target)
    assert r.code == 1 and "migrations/1_a/down.sql:2: COMMIT inside a down.sql" in r.err, r.output
    assert {"a", "b"} <= tables(pg, db)  # nothing reverted, not even 2_b
    assert [h[0] for h in history(pg, db)] == ["1", "2"]


def test_non_transactional_opt_in(target: Path, nself, pg: Cluster, db: str) -> None:
    write(target, "1_t", "CREATE TABLE t (id int, v text);")
    write(
        target,
        "2_idx",
        "-- nself:no-transaction\nCREATE INDEX CONCURRENTLY t_v ON t (v);\n"
        "CREATE INDEX CONCURRENTLY t_id ON t (id);\n",
    )
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 0, r.output
    idx = {r[0] for r in pg.sql("SELECT indexname FROM pg_indexes WHERE tablename='t'", db)}
    assert idx == {"t_v", "t_id"}
    # without the opt-in, CONCURRENTLY fails inside the transaction and nothing stays behind
    write(target, "3_idx", "CREATE INDEX CONCURRENTLY t_both ON t (id, v);")
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 1 and "cannot run inside a transaction block" in r.err


def test_held_lock_gives_a_clear_message(target: Path, nself, pg: Cluster, db: str) -> None:
    from nself_builtins.database.migrations import LOCK_KEY

    write(target, "1_t", "CREATE TABLE t (id int);")
    with pg.connect(db) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        started = time.monotonic()
        r = nself("db", "migrate", "up", "--lock-timeout", "1", cwd=target)
        assert time.monotonic() - started >= 1
    assert r.code == 1
    assert "another migration run holds the migration lock (server pid" in r.err
    assert "t" not in tables(pg, db)
    assert nself("db", "migrate", "up", cwd=target).code == 0


def test_ten_concurrent_runs_apply_each_migration_once(target: Path, pg: Cluster, db: str) -> None:
    write(target, "0_log", "CREATE TABLE runs (migration text);")
    for n in range(1, 6):
        write(target, f"{n}_m{n}", f"INSERT INTO runs VALUES ('m{n}'); SELECT pg_sleep(0.05);")
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [NSELF, "db", "migrate", "up"],
            cwd=target,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(10)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    counts = pg.sql("SELECT migration, count(*) FROM runs GROUP BY 1 ORDER BY 1", db)
    assert counts == [(f"m{n}", 1) for n in range(1, 6)]
    assert len(history(pg, db)) == 6
    assert pg.sql("SELECT count(*) FROM np_schema_migrations_log WHERE action='apply'", db) == [
        (6,)
    ]


def _wait_for_sleep(pg: Cluster, db: str) -> None:
    for _ in range(200):
        busy = pg.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()",
            db,
        )
        if busy[0][0]:
            return
        time.sleep(0.05)
    raise AssertionError("the migration never started")


def _wait_until_gone(pg: Cluster, db: str) -> None:
    for _ in range(100):
        active = pg.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%'"
            " AND pid <> pg_backend_pid()",
            db,
        )[0][0]
        if not active:
            return
        time.sleep(0.1)
    raise AssertionError("the killed run's statement is still running on the server")


def test_killed_run_leaves_a_consistent_state(target: Path, nself, pg: Cluster, db: str) -> None:
    write(target, "1_slow", "CREATE TABLE slow (id int); SELECT pg_sleep(60);")
    proc = subprocess.Popen([NSELF, "db", "migrate", "up"], cwd=target, env=dict(os.environ))
    _wait_for_sleep(pg, db)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the server notices the dead client (client_connection_check_interval), rolls the
    # migration back and frees the lock by itself
    _wait_until_gone(pg, db)
    assert "slow" not in tables(pg, db)
    assert history(pg, db) == []
    (target / "migrations/1_slow/up.sql").write_text("CREATE TABLE slow (id int);")
    # the file changed but was never applied: no checksum conflict, and no stale lock
    r = nself("db", "migrate", "up", "--lock-timeout", "5", cwd=target)
    assert r.code == 0, r.output
    assert history(pg, db) == [("1", "slow", "applied")]
    # the killed apply is in the audit log, found by the next run
    assert "logged 1_slow as interrupted" in r.out
    actions = [a for (a,) in pg.sql("SELECT action FROM np_schema_migrations_log ORDER BY id", db)]
    assert actions == ["apply-started", "apply-interrupted", "apply-started", "apply"]


def test_killed_non_transactional_run_is_flagged_until_repaired(
    target: Path,
    nself,
    pg: Cluster,
    db: str,
) -> None:
    write(target, "1_t", "CREATE TABLE t (id int);")
    write(
        target, "2_nt", "-- nself:no-transaction\nCREATE TABLE u (id int);\nSELECT pg_sleep(60);\n"
    )
    proc = subprocess.Popen([NSELF, "db", "migrate", "up"], cwd=target, env=dict(os.environ))
    _wait_for_sleep(pg, db)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _wait_until_gone(pg, db)
    assert history(pg, db) == [("1", "t", "applied"), ("2", "nt", "running")]
    r = nself("db", "migrate", "up", "--lock-timeout", "5", cwd=target)
    assert (
        r.code == 1
        and "migrations/2_nt/up.sql: a non-transactional migration was interrupted" in r.err
    )
    r = nself("db", "migrate", "repair", "--yes", cwd=target)
    assert r.code == 2 and "--interrupted" in r.err
    # its effects are checked: the table is there, but SELECT pg_sleep cannot be checked
    r = nself("db", "migrate", "repair", "--yes", "--interrupted", "applied", cwd=target)
    assert r.code == 2 and "cannot check that 2_nt completed: line 3 (SelectStmt)" in r.err
    assert history(pg, db)[-1] == ("2", "nt", "running")
    r = nself(
        "db",
        "migrate",
        "repair",
        "--yes",
        "--interrupted",
        "applied",
        "--reason",
        "the sleep does nothing",
        cwd=target,
    )
    assert r.code == 0, r.output
    assert history(pg, db)[-1] == ("2", "nt", "applied")
    log = pg.sql("SELECT action, detail FROM np_schema_migrations_log ORDER BY id", db)
    assert ("apply-interrupted" in [a for a, _d in log]) and "the sleep does nothing" in log[-1][1]


def test_production_needs_confirm_and_remote_transport_is_not_there_yet(
    project: Path, nself, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NSELF_DB_URL", raising=False)
    write(project, "1_t", "CREATE TABLE t (id int);")
    r = nself("db", "migrate", "up", "--env", "prod", cwd=project)
    assert r.code == 4 and "migrating on production needs --confirm" in r.err
    r = nself("db", "migrate", "up", "--env", "prod", "--confirm", cwd=project)
    assert r.code == 1 and "not available yet" in r.err
    r = nself("db", "migrate", "up", "--env", "prod", "--dry-run", cwd=project)
    assert r.code == 0 and "would apply (if not applied): 1_t" in r.out
    r = nself("db", "migrate", "up", "--env", "staging", cwd=project)
    assert r.code == 1 and "staging database is not available yet" in r.err


def test_prod_dry_run_against_a_reachable_database(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    write(target, "1_t", "CREATE TABLE t (id int);")
    r = nself("db", "migrate", "up", "--env", "prod", "--dry-run", cwd=target)
    assert r.code == 0 and "would apply 1_t" in r.out
    assert "t" not in tables(pg, db)
    r = nself("db", "migrate", "up", "--env", "prod", "--confirm", cwd=target)
    assert r.code == 0 and "t" in tables(pg, db)


def test_plugin_migrations_run_in_dependency_order() -> None:
    def item(source: str, version: str, deps: tuple[str, ...] = ()) -> Item:
        return Item(source, version, "x", "SELECT 1", None, True, f"{source}:{version}", deps)

    items = [
        item("project", "20260101000000"),
        item("billing", "1", ("auth",)),
        item("auth", "2"),
        item("auth", "1"),
        item("billing", "2"),
    ]
    order = [i.label.split("_")[0] for i in ordered(items)]
    assert order == ["auth:1", "auth:2", "billing:1", "billing:2", "20260101000000"]


def test_transaction_control_is_found_by_postgres_own_parser(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    """COMMIT in a string, a dollar-quoted body and a comment is text; as a statement it
    would commit half the file: refused before anything runs, naming file and line."""
    harmless = (
        "-- COMMIT; a comment, not a statement\n"
        "/* ROLLBACK; BEGIN; also a comment */\n"
        "CREATE TABLE notes (body text DEFAULT 'COMMIT;');\n"
        "INSERT INTO notes VALUES ('END; ROLLBACK;'), ($$ COMMIT; $$);\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN RETURN 1; END $f$;\n"
        "SAVEPOINT s; ROLLBACK TO SAVEPOINT s; RELEASE s;\n"
    )
    write(target, "1_text", harmless)
    write(
        target,
        "2_half",
        "CREATE TABLE first_half (id int);\nCOMMIT;\nCREATE TABLE other (id int);\n",
    )
    write(target, "3_later", "CREATE TABLE later (id int);\n")
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 1 and "Traceback" not in r.output
    assert "migrations/2_half/up.sql:2: COMMIT inside a migration" in r.err
    assert "-- nself:no-transaction" in r.err
    assert tables(pg, db) & {"notes", "first_half", "other", "later"} == set()  # nothing ran
    r = nself("db", "migrate", "up", "--dry-run", cwd=target)
    assert r.code == 1 and "2_half/up.sql:2: COMMIT" in r.err
    for statement in ("END;", "ROLLBACK;", "BEGIN;", "start transaction;"):
        (target / "migrations/2_half/up.sql").write_text(f"SELECT 1;\n\n{statement}\n")
        r = nself("db", "migrate", "up", cwd=target)
        assert r.code == 1 and "2_half/up.sql:3:" in r.err, (statement, r.err)
    # marked non-transactional, the same file runs statement by statement
    (target / "migrations/2_half/up.sql").write_text(
        "-- nself:no-transaction\nCREATE TABLE first_half (id int);\nCOMMIT;\n"
        "CREATE TABLE other (id int);\n"
    )
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 0, r.output
    assert {"notes", "first_half", "other", "later"} <= tables(pg, db)
    assert pg.sql("SELECT count(*) FROM notes", db) == [(2,)]
    # the marker inside a string is not a marker
    write(target, "4_fake", "SELECT '\n-- nself:no-transaction\n';\nCOMMIT;\n")
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 1 and "4_fake/up.sql:4: COMMIT" in r.err
    # SQL the parser cannot read is refused with its line, before anything runs
    (target / "migrations/4_fake/up.sql").write_text("CREATE TABLE ok (id int);\nCREATE TABLE (;\n")
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 1 and "4_fake/up.sql:2: PostgreSQL's parser cannot read it" in r.err
    assert "ok" not in tables(pg, db)


def test_repair_one_at_a_time_and_interrupted_applied_is_checked(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    write(target, "1_a", "CREATE TABLE a (id int);")
    write(target, "2_b", "CREATE TABLE b (id int);")
    write(target, "3_ix", "-- nself:no-transaction\nCREATE INDEX CONCURRENTLY b_id ON b (id);\n")
    assert nself("db", "migrate", "up", cwd=target).code == 0
    (target / "migrations/1_a/up.sql").write_text("CREATE TABLE a (id bigint);")
    (target / "migrations/2_b/up.sql").write_text("CREATE TABLE b (id bigint);")
    r = nself("db", "migrate", "repair", "1_a", "--yes", cwd=target)
    assert r.code == 0 and "repaired 1 entry" in r.out, r.output
    r = nself("db", "migrate", "status", "--json", cwd=target)
    states = {m["version"]: m["state"] for m in json.loads(r.out)["migrations"]}
    assert states == {"1": "applied", "2": "changed", "3": "applied"}
    r = nself("db", "migrate", "repair", "9_nope", "--yes", cwd=target)
    assert r.code == 2 and "no applied migration is called 9_nope" in r.err
    assert nself("db", "migrate", "repair", "2", "--yes", cwd=target).code == 0
    # an interrupted CREATE INDEX CONCURRENTLY whose index is missing or invalid
    pg.sql("UPDATE np_schema_migrations SET state = 'running' WHERE version = '3'", db)
    pg.sql("DROP INDEX b_id", db)
    r = nself("db", "migrate", "repair", "3", "--interrupted", "applied", "--yes", cwd=target)
    assert r.code == 1 and "3_ix did not complete: index b_id is not there" in r.err
    assert "--interrupted pending" in r.err
    pg.sql("CREATE INDEX b_id ON b (id)", db)
    pg.sql("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'b_id'::regclass", db)
    r = nself("db", "migrate", "repair", "3", "--interrupted", "applied", cwd=target)  # dry run
    assert r.code == 1 and "did not complete" in r.err
    pg.sql("UPDATE pg_index SET indisvalid = true WHERE indexrelid = 'b_id'::regclass", db)
    r = nself("db", "migrate", "repair", "3", "--interrupted", "applied", "--yes", cwd=target)
    assert r.code == 0, r.output  # every statement checked: no reason needed
    assert history(pg, db)[-1] == ("3", "ix", "applied")


def test_failed_applies_are_audited_and_the_log_is_append_only(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    write(target, "1_bad", "CREATE TABLE ok (id int);\nSELECT 1/0;\n")
    r = nself("db", "migrate", "up", cwd=target)
    assert r.code == 1
    log = pg.sql("SELECT action, version, detail FROM np_schema_migrations_log ORDER BY id", db)
    assert [(a, v) for a, v, _d in log] == [("apply-started", "1"), ("apply-failed", "1")]
    assert "division by zero" in log[-1][2]
    r = nself("db", "migrate", "log", "--json", cwd=target)
    assert [row["action"] for row in json.loads(r.out)] == ["apply-failed"]
    # the database's own role (the owner, a superuser here, as in the stack) cannot change it
    for statement in (
        "DELETE FROM np_schema_migrations_log",
        "UPDATE np_schema_migrations_log SET detail = ''",
        "TRUNCATE np_schema_migrations_log",
        "DROP TABLE np_schema_migrations_log",
        "ALTER TABLE np_schema_migrations_log DISABLE TRIGGER np_log_append_only",
        "DROP TRIGGER np_log_append_only ON np_schema_migrations_log",
        "SET session_replication_role = replica; DELETE FROM np_schema_migrations_log",
    ):
        with pytest.raises(Exception, match="audit log"):
            pg.sql(statement, db)
    assert len(pg.sql("SELECT * FROM np_schema_migrations_log", db)) == 2
    # a backup of it restores (the guards come back with it)
    r = nself("db", "backup", "--json", cwd=target)
    assert r.code == 0, r.output
