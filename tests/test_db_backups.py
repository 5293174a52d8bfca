"""`nself db backup / verify / restore` against a real PostgreSQL 15 cluster."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import pg_cluster
from pg_cluster import Cluster

pytestmark = pytest.mark.postgres
pg, db = pg_cluster.pg, pg_cluster.db

DATA = """
CREATE ROLE app_reader NOLOGIN;
CREATE TABLE customers (id serial PRIMARY KEY, email text UNIQUE NOT NULL, note text);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers,
                     total numeric(10,2), at timestamptz DEFAULT now());
CREATE INDEX orders_customer ON orders (customer);
CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 50;
GRANT SELECT ON customers TO app_reader;
INSERT INTO customers (email, note)
     SELECT 'c' || g || '@example.com', repeat('x', g % 50) FROM generate_series(1, 2000) g;
INSERT INTO orders (customer, total) SELECT 1 + g % 2000, g % 97 FROM generate_series(1, 5000) g;
"""


def checksums(pg: Cluster, database: str) -> dict[str, str]:
    """A content checksum per table: md5 over the rows in primary-key order."""
    out = {}
    for table in ("customers", "orders"):
        row = pg.sql(f"SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {table} t", database)
        out[table] = row[0][0]
    return out


@pytest.fixture
def target(project: Path, pg: Cluster, db: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NSELF_DB_URL", pg.url(db))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(pg.bindir))
    with pg.connect(db) as conn:
        conn.execute("DROP ROLE IF EXISTS app_reader")
        conn.execute(DATA)
    yield project
    drop_family(pg, db)
    with pg.connect() as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
        conn.execute("DROP ROLE IF EXISTS app_reader")


def drop_family(pg: Cluster, db: str) -> None:
    """The test's database and every database a restore of it kept or left."""
    names = [n for (n,) in pg.sql("SELECT datname FROM pg_database") if n.startswith(db[:30])]
    with pg.connect() as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def backup(nself, project: Path, *args: str) -> dict:  # type: ignore[no-untyped-def]
    r = nself("db", "backup", "--json", *args, cwd=project)
    assert r.code == 0, r.output
    return json.loads(r.out[r.out.index("{") :])


def test_round_trip_backup_verify_restore(target: Path, nself, pg: Cluster, db: str) -> None:
    before = checksums(pg, db)
    manifest = backup(nself, target, "--label", "pre-migration-v1.2")
    name = manifest["name"]
    assert name.startswith("backup-") and name.endswith("-pre-migration-v1.2.dump")
    folder = target / "backups"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"  # never committed
    for path in (folder / name, folder / f"{name}.globals.sql", folder / f"{name}.json"):
        assert path.stat().st_mode & 0o777 == 0o600
    assert manifest["tables"] == {"public.customers": 2000, "public.orders": 5000}
    assert manifest["postgres_version"].startswith("15") and manifest["nself_version"]
    assert "app_reader" in (folder / f"{name}.globals.sql").read_text()
    assert not list(folder.glob(".*.part"))

    r = nself("db", "backup", "list", cwd=target)
    assert r.code == 0 and name in r.out and "NEVER VERIFIED" in r.out
    r = nself("db", "backup", "verify", name, cwd=target)
    assert r.code == 0, r.output
    assert "2 tables, 7000 rows match" in r.out
    r = nself("db", "backup", "list", cwd=target)
    assert "NEVER VERIFIED" not in r.out and "verified" in r.out
    assert not [
        d for (d,) in pg.sql("SELECT datname FROM pg_database") if d.startswith("nself_verify")
    ]

    # change everything, then restore
    pg.sql("DELETE FROM orders WHERE id > 10; UPDATE customers SET note = 'changed'", db)
    assert checksums(pg, db) != before
    r = nself("db", "restore", name, cwd=target)
    assert r.code == 0, r.output
    assert checksums(pg, db) == before
    assert pg.sql("SELECT count(*) FROM big_orders", db)[0][0] > 0
    # the previous database is kept, named in the output, with the data from just before
    kept = [d for (d,) in pg.sql("SELECT datname FROM pg_database") if "__pre_restore_" in d]
    assert len(kept) == 1 and kept[0].startswith(db[:30])
    assert kept[0] in r.out
    assert pg.sql("SELECT count(*) FROM orders", kept[0]) == [(10,)]
    assert not [n for n in os.listdir(folder) if "pre-restore" in n]  # no dump needed
    leftovers = [d for (d,) in pg.sql("SELECT datname FROM pg_database") if "__restoring" in d]
    assert leftovers == []


def test_restore_recreates_missing_roles(target: Path, nself, pg: Cluster, db: str) -> None:
    """The roles a cluster lacks come back with their settings and memberships (a rebuilt
    server); the roles file is read by PostgreSQL's parser: only statements about those
    roles run, one at a time, never anything else a line of it holds."""
    pg.sql(
        'DROP ROLE IF EXISTS "app member"; CREATE ROLE "app member" LOGIN;'
        ' GRANT app_reader TO "app member";'
        """ ALTER ROLE "app member" SET search_path TO 'x'"""
    )
    try:
        name = backup(nself, target)["name"]
        pg.sql('DROP OWNED BY app_reader; DROP ROLE "app member"; DROP ROLE app_reader', db)
        roles = target / "backups" / f"{name}.globals.sql"
        text = roles.read_text() + "CREATE ROLE zz_extra; CREATE TABLE planted (id int);\n"
        roles.write_text(text)
        manifest_file = target / "backups" / f"{name}.json"
        manifest = json.loads(manifest_file.read_text())
        manifest["globals_sha256"] = hashlib.sha256(text.encode()).hexdigest()
        manifest_file.write_text(json.dumps(manifest))
        r = nself("db", "restore", name, "--no-safety-backup", cwd=target)
        assert r.code == 0, r.output
        assert pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'app_reader'") == [(1,)]
        grants = pg.sql("SELECT has_table_privilege('app_reader', 'customers', 'SELECT')", db)
        assert grants == [(True,)]
        assert pg.sql("SELECT pg_has_role('app member', 'app_reader', 'MEMBER')") == [(True,)]
        assert pg.sql(
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
            " WHERE r.rolname = 'app member'"
        ) == [(["search_path=x"],)]
        assert pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'zz_extra'") == [(1,)]
        assert pg.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'planted'") == [(0,)]
    finally:
        pg.sql("DROP TABLE IF EXISTS planted; DROP ROLE IF EXISTS zz_extra")
        pg.sql('DROP ROLE IF EXISTS "app member"')


@pytest.mark.parametrize(
    "damage", ["truncated", "corrupted", "wrong-hash", "malformed", "no-manifest"]
)
def test_damaged_backups_are_refused_before_anything_changes(
    damage: str, target: Path, nself, pg: Cluster, db: str
) -> None:
    name = backup(nself, target)["name"]
    folder = target / "backups"
    dump = folder / name
    data = dump.read_bytes()
    if damage == "truncated":
        dump.write_bytes(data[: len(data) // 2])
    elif damage == "corrupted":
        middle = len(data) // 2
        dump.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    elif damage == "wrong-hash":
        manifest = json.loads((folder / f"{name}.json").read_text())
        manifest["sha256"] = "0" * 64
        (folder / f"{name}.json").write_text(json.dumps(manifest))
    elif damage == "malformed":  # any JSON may be in the file: one line, no traceback
        manifest = json.loads((folder / f"{name}.json").read_text())
        manifest["size"] = str(manifest["size"] + 1)
        (folder / f"{name}.json").write_text(json.dumps(manifest))
    else:
        (folder / f"{name}.json").unlink()
    pg.sql("INSERT INTO customers (email) VALUES ('after@example.com')", db)
    before = checksums(pg, db)
    backups_before = sorted(os.listdir(folder))
    r = nself("db", "restore", name, cwd=target)
    assert r.code == 1
    expected = {
        "truncated": "is damaged: ",
        "corrupted": "sha256 does not match",
        "wrong-hash": "sha256 does not match",
        "malformed": "manifest of backup " + name + " is malformed: size",
        "no-manifest": "has no manifest",
    }[damage]
    assert expected in r.err and "nothing was changed" in r.err, r.output
    assert "Traceback" not in r.output
    if damage == "truncated":
        assert "(truncated)" in r.err
    assert checksums(pg, db) == before  # the database was not touched
    assert sorted(os.listdir(folder)) == backups_before  # not even a safety backup
    if damage != "no-manifest":
        r = nself("db", "backup", "verify", name, cwd=target)
        assert r.code == 1 and "failed verification" in r.err


def test_a_broken_dump_with_a_matching_hash_fails_pg_restore_checks(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    """Damage made before hashing (a bad disk or tool) is still caught before restoring."""
    from nself_builtins.database.backups import file_sha256

    name = backup(nself, target)["name"]
    folder = target / "backups"
    dump = folder / name
    dump.write_bytes(dump.read_bytes()[:200])
    manifest = json.loads((folder / f"{name}.json").read_text())
    manifest.update(size=dump.stat().st_size, sha256=file_sha256(dump))
    (folder / f"{name}.json").write_text(json.dumps(manifest))
    before = checksums(pg, db)
    r = nself("db", "restore", name, cwd=target)
    assert r.code == 1 and "unreadable by pg_restore" in r.err
    assert checksums(pg, db) == before
    assert len(list(folder.glob("*.dump"))) == 1


def test_verify_all_and_retention(target: Path, nself, pg: Cluster, db: str) -> None:
    from datetime import UTC, datetime, timedelta

    names = [backup(nself, target, "--label", f"n{i}")["name"] for i in range(3)]
    folder = target / "backups"
    r = nself("db", "backup", "verify", "--all", cwd=target)
    assert r.code == 0, r.output
    # age all three; the newest (verified) one must survive
    for i, name in enumerate(names):
        path = folder / f"{name}.json"
        manifest = json.loads(path.read_text())
        manifest["created"] = (datetime.now(UTC) - timedelta(days=40 - i)).isoformat()
        path.write_text(json.dumps(manifest))
    r = nself("db", "backup", "prune", cwd=target)
    assert r.code == 0 and "would delete" in r.out and "dry run" in r.out
    assert len(list(folder.glob("*.dump"))) == 3
    r = nself("db", "backup", "prune", "--yes", cwd=target)
    assert r.code == 0, r.output
    left = sorted(p.name for p in folder.glob("*.dump"))
    assert left == [names[2]]


def test_restore_on_production_needs_confirm(target: Path, nself) -> None:
    name = backup(nself, target)["name"]
    r = nself("db", "restore", name, "--env", "prod", cwd=target)
    assert r.code == 4 and "needs --confirm" in r.err
    r = nself("db", "restore", name, "--env", "prod", "--dry-run", cwd=target)
    assert r.code == 0 and "would restore" in r.out


def test_a_backup_of_another_project_needs_from_other_project(
    target: Path, nself, pg: Cluster, db: str, tmp_path: Path
) -> None:
    """Provenance: project, cluster and database are in the manifest and checked."""
    manifest = backup(nself, target)
    assert manifest["project"] == "demo" and manifest["database"] == db
    system_id = pg.sql("SELECT system_identifier::text FROM pg_control_system()")[0][0]
    assert manifest["system_identifier"] == system_id
    other = tmp_path / "shop"
    assert nself("init", str(other), "--name", "shop").code == 0
    (other / "backups").mkdir(exist_ok=True)
    for path in (target / "backups").glob(manifest["name"] + "*"):
        (other / "backups" / path.name).write_bytes(path.read_bytes())
    pg.sql("INSERT INTO customers (email) VALUES ('shop@example.com')", db)
    before = checksums(pg, db)
    r = nself("db", "restore", manifest["name"], cwd=other)
    assert r.code == 1 and "Traceback" not in r.output
    assert "project demo (here: shop)" in r.err and f"replace database {db}" in r.err
    assert "--from-other-project" in r.err and "nothing was changed" in r.err
    assert checksums(pg, db) == before
    r = nself("db", "restore", manifest["name"], "--dry-run", cwd=other)  # says the same
    assert r.code == 1 and "project demo (here: shop)" in r.err and "would restore" not in r.out
    r = nself("db", "restore", manifest["name"], "--dry-run", "--from-other-project", cwd=other)
    assert r.code == 0 and "from elsewhere (project demo (here: shop))" in r.out, r.output
    # a manifest that says nothing of its origin (an older nself) is not trusted either
    path = other / "backups" / f"{manifest['name']}.json"
    data = json.loads(path.read_text())
    for key in ("project", "system_identifier"):
        data.pop(key)
    path.write_text(json.dumps(data))
    r = nself("db", "restore", manifest["name"], cwd=other)
    assert r.code == 1 and "project unknown (here: shop)" in r.err
    assert "cluster unknown" in r.err
    r = nself("db", "restore", manifest["name"], "--from-other-project", cwd=other)
    assert r.code == 0, r.output
    assert "came from elsewhere: project unknown (here: shop)" in r.out
    assert checksums(pg, db) != before  # replaced, as asked


def test_restored_row_counts_must_match_the_manifest(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    """The server's committed-row counts are trusted only when they agree with the
    manifest; otherwise the table is counted row by row, and a difference stops the
    restore before the swap."""
    name = backup(nself, target)["name"]
    path = target / "backups" / f"{name}.json"
    manifest = json.loads(path.read_text())
    manifest["tables"]["public.orders"] += 1
    path.write_text(json.dumps(manifest))
    pg.sql("DELETE FROM orders WHERE id > 10", db)
    r = nself("db", "restore", name, cwd=target)
    assert r.code == 1 and "restored row counts differ" in r.err
    assert "public.orders: 5001 -> 5000" in r.err
    assert pg.sql("SELECT count(*) FROM orders", db) == [(10,)]  # untouched
    assert [d for (d,) in pg.sql("SELECT datname FROM pg_database") if "__restoring_" in d] == []


def test_a_server_estimate_is_never_taken_for_a_row_count(pg: Cluster, db: str) -> None:
    """After an ANALYZE (autovacuum works in the new database while pg_restore fills it),
    n_live_tup is an estimate: equal to the manifest's or not, it is not trusted."""
    from nself_builtins.database.backups import restored_counts

    pg.sql(
        "CREATE TABLE uneven (id int, pad text) WITH (autovacuum_enabled = false);"
        " ALTER TABLE uneven ALTER COLUMN id SET STATISTICS 1;"
        " ALTER TABLE uneven ALTER COLUMN pad SET STATISTICS 1;"
        " INSERT INTO uneven SELECT g, 'x' FROM generate_series(1, 100000) g;"
        " INSERT INTO uneven SELECT g, repeat('y', 1500) FROM generate_series(1, 10000) g;"
        " CREATE TABLE plain (id int) WITH (autovacuum_enabled = false);"
        " INSERT INTO plain SELECT generate_series(1, 500);",
        db,
    )
    with pg.connect(db) as conn:
        assert restored_counts(conn, {"public.plain": 500}) == {"public.plain": 500}
        conn.execute("ANALYZE uneven")
        conn.execute("SELECT pg_stat_force_next_flush()")
    with pg.connect(db) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        (estimate,) = conn.execute(
            "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'uneven'"
        ).fetchone()
        assert estimate != 110000  # the sampled estimate, not the real count
        assert restored_counts(conn, {"public.uneven": estimate}) == {}


def test_a_database_owner_that_is_not_a_superuser_restores(
    project: Path, nself, pg: Cluster, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A managed database's owner: CREATEDB, no superuser, no right to name pg_default,
    and a cluster that hides its system identifier. A superuser's session it may not close
    is named (and the restore undone) instead of an unexpected error."""
    import psycopg

    pg.sql("DROP ROLE IF EXISTS app_owner")
    pg.sql("CREATE ROLE app_owner LOGIN CREATEDB PASSWORD 'owner-Secret-1'")
    pg.sql(f'ALTER DATABASE "{db}" OWNER TO app_owner')
    pg.sql("ALTER SCHEMA public OWNER TO app_owner", db)
    hidden = ("postgres", db)
    for name in hidden:  # as a managed service does
        pg.sql("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC", name)
    url = pg.url(db).replace(f"postgres:{pg_cluster.PASSWORD}@", "app_owner:owner-Secret-1@")
    monkeypatch.setenv("NSELF_DB_URL", url)
    monkeypatch.setenv("NSELF_PG_BINDIR", str(pg.bindir))
    try:
        pg.sql("CREATE TABLE notes (id int); INSERT INTO notes VALUES (1), (2)", db)
        pg.sql("ALTER TABLE notes OWNER TO app_owner", db)
        manifest = backup(nself, project)
        assert manifest["system_identifier"] is None
        pg.sql("INSERT INTO notes VALUES (3)", db)
        with psycopg.connect(pg.url(db), autocommit=True):  # a superuser stays connected
            r = nself("db", "restore", manifest["name"], cwd=project)
        assert r.code == 1 and "Traceback" not in r.output
        assert "could not be closed (postgres (this role may not end it))" in r.err, r.output
        assert "the restore was undone" in r.err
        assert pg.sql("SELECT count(*) FROM notes", db) == [(3,)]
        # a superuser's setting in the database, which this owner may not set: left out
        # with a warning rather than failing the restore
        pg.sql(f"ALTER ROLE postgres IN DATABASE \"{db}\" SET statement_timeout = '9s'")
        r = nself("db", "restore", manifest["name"], cwd=project)
        assert r.code == 0, r.output  # its own backup: no --from-other-project needed
        assert pg.sql("SELECT count(*) FROM notes", db) == [(2,)]
        assert "left out of the restored one: statement_timeout = 9s (role postgres)" in r.err
        owner = f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'"
        assert pg.sql(owner) == [("app_owner",)]
        assert [d for (d,) in pg.sql("SELECT datname FROM pg_database") if "__restoring" in d] == []
    finally:
        for name in hidden:
            pg.sql("GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC", name)
        drop_family(pg, db)
        pg.sql(f'CREATE DATABASE "{db}"')
        pg.sql("DROP ROLE IF EXISTS app_owner")


def test_the_databases_settings_come_back_as_they_were(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    """The restored database gets the current one's settings: a search_path of several
    schemas stays a list (given back as one string it named a single schema that does not
    exist, and every unqualified table was gone), a role's setting in this database too."""
    pg.sql(
        "CREATE SCHEMA app; CREATE TABLE app.things (id int); INSERT INTO app.things VALUES (7)", db
    )
    pg.sql(f'ALTER DATABASE "{db}" SET search_path = app, "$user"')
    pg.sql(f"ALTER DATABASE \"{db}\" SET work_mem = '8MB'")
    pg.sql("DROP ROLE IF EXISTS app_timed; CREATE ROLE app_timed")
    pg.sql(f"ALTER ROLE app_timed IN DATABASE \"{db}\" SET statement_timeout = '7s'")
    settings = (
        "SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '-'), s.setconfig"
        " FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
        f" WHERE d.datname = '{db}' ORDER BY 1"
    )
    before = pg.sql(settings)
    try:
        name = backup(nself, target)["name"]
        # the scratch database of a verify has PostgreSQL's default search_path: the schema
        # compared is read with that path on both sides (here customers is not on the
        # database's own path, so a foreign key's definition names its schema there)
        r = nself("db", "backup", "verify", name, cwd=target)
        assert r.code == 0, r.output
        r = nself("db", "restore", name, cwd=target)
        assert r.code == 0, r.output
        assert pg.sql(settings) == before
        assert pg.sql("SELECT id FROM things", db) == [(7,)]  # found through the search_path
    finally:
        drop_family(pg, db)
        pg.sql(f'CREATE DATABASE "{db}"')
        pg.sql("DROP ROLE IF EXISTS app_timed")


def test_verify_leaves_no_role_behind(target: Path, nself, pg: Cluster, db: str) -> None:
    """A verify only looks: the roles its scratch copy needs are created for it (without
    login or any attribute) and dropped afterwards. A backup from elsewhere names that
    cluster's superuser, with its password: verifying it never creates a login here."""
    name = backup(nself, target)["name"]
    pg.sql("DROP OWNED BY app_reader; DROP ROLE app_reader", db)
    roles = target / "backups" / f"{name}.globals.sql"
    text = roles.read_text() + (
        "CREATE ROLE intruder;\n"
        "ALTER ROLE intruder WITH SUPERUSER LOGIN PASSWORD 'known-to-someone-else';\n"
        "CREATE ROLE intruder2 SUPERUSER LOGIN PASSWORD 'known-to-someone-else';\n"
    )
    roles.write_text(text)
    manifest_file = target / "backups" / f"{name}.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["globals_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    manifest_file.write_text(json.dumps(manifest))
    try:
        r = nself("db", "backup", "verify", name, cwd=target)
        assert r.code == 0, r.output  # the scratch copy had app_reader for its grants
        left = pg.sql(
            "SELECT rolname FROM pg_roles WHERE rolname IN ('app_reader', 'intruder', 'intruder2')"
        )
        assert left == []
    finally:
        pg.sql("DROP ROLE IF EXISTS intruder; DROP ROLE IF EXISTS intruder2")


def test_a_database_with_time_limits_and_read_only_by_default(
    target: Path, nself, pg: Cluster, db: str
) -> None:
    """Settings a production database often has do not break its backups and restores:
    a short statement_timeout (counting a large table), an idle-in-transaction timeout
    (the session holding the backup's snapshot waits for pg_dump) and
    default_transaction_read_only (pg_restore writes into the new database)."""
    pg.sql(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS pad FROM generate_series(1, 600000) g",
        db,
    )
    for setting in (
        "statement_timeout = '20ms'",
        "idle_in_transaction_session_timeout = '100ms'",
        "default_transaction_read_only = on",
    ):
        pg.sql(f'ALTER DATABASE "{db}" SET {setting}')
    settings = (
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d"
        f" ON d.oid = s.setdatabase WHERE d.datname = '{db}' AND s.setrole = 0"
    )
    before = pg.sql(settings)
    try:
        manifest = backup(nself, target)
        assert manifest["tables"]["public.big"] == 600000
        r = nself("db", "restore", manifest["name"], cwd=target)
        assert r.code == 0, r.output
        assert pg.sql(settings) == before  # the restored database has them too
        assert pg.sql("SELECT count(*) FROM customers", db) == [(2000,)]
    finally:
        drop_family(pg, db)
        pg.sql(f'CREATE DATABASE "{db}"')


def test_a_name_that_is_no_backup(target: Path, nself) -> None:  # type: ignore[no-untyped-def]
    backup(nself, target)
    for name in ("", ".", "..", "../../etc/passwd", "nope"):
        r = nself("db", "restore", name, "--dry-run", cwd=target)
        assert r.code == 1 and f"no backup named {name} in " in r.err, (name, r.output)
