"""Benchmark the database lifecycle on a real PostgreSQL (figures go to docs/performance.md).

1. Backup and restore of a pgbench database (scale 70: about 1 GB) with nself's engine
   against bare `pg_dump -Fc` and `pg_restore` on the same server. Goal: within 1.1x.
   nself's backup also counts every table in the dump's snapshot, dumps roles and
   hashes the file; its restore checks the hash and pg_restore's table of contents,
   restores in parallel into a new database, compares row counts and schema with the
   manifest, then swaps the databases. The safety backup a restore normally takes first
   is measured separately (it is one more backup).
2. `migrate up` of 500 small migrations (engine, and the whole CLI). Goal: under 5 s.

Starts its own throw-away PostgreSQL 15 cluster. Usage:

    .venv/bin/python bench/database.py [--scale 70] [--migrations 500] [--skip-dump]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from nself_builtins.database.backups import Store, restore, take, verify  # noqa: E402
from nself_builtins.database.migrations import Runner, project_migrations  # noqa: E402
from nself_builtins.database.pitr import archive_command  # noqa: E402
from nself_builtins.database.transport import DirectTransport  # noqa: E402
from pg_cluster import Cluster  # noqa: E402


def timed(label: str, fn, results: dict[str, float]):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    value = fn()
    results[label] = time.perf_counter() - started
    print(f"  {label:<44} {results[label]:8.2f} s", flush=True)
    return value


def tool(cluster: Cluster, name: str, *args: str) -> None:
    env = dict(os.environ, PGPASSWORD="test-only-Secret-9f2c")
    subprocess.run(
        [
            str(cluster.bindir / name),
            "-h",
            "127.0.0.1",
            "-p",
            str(cluster.port),
            "-U",
            "postgres",
            *args,
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def bench_dump(cluster: Cluster, scale: int, work: Path) -> None:
    results: dict[str, float] = {}
    cluster.sql("CREATE DATABASE bench")
    timed(
        "pgbench -i",
        lambda: tool(cluster, "pgbench", "-i", "-q", "-s", str(scale), "bench"),
        results,
    )
    size = cluster.sql("SELECT pg_database_size('bench')")[0][0]
    print(f"  database size: {size / 2**30:.2f} GiB", flush=True)
    bare = work / "bare.dump"
    timed(
        "bare pg_dump -Fc",
        lambda: tool(cluster, "pg_dump", "-Fc", "-f", str(bare), "bench"),
        results,
    )
    cluster.sql("CREATE DATABASE bare_restore")
    timed(
        "bare pg_restore (1 job)",
        lambda: tool(cluster, "pg_restore", "-d", "bare_restore", str(bare)),
        results,
    )
    cluster.sql("DROP DATABASE bare_restore")
    cluster.sql("CREATE DATABASE bare_restore")
    timed(
        "bare pg_restore -j 2",
        lambda: tool(cluster, "pg_restore", "-j", "2", "-d", "bare_restore", str(bare)),
        results,
    )
    cluster.sql("DROP DATABASE bare_restore")

    transport = DirectTransport.from_url(cluster.url("bench"), cluster.bindir)
    store = Store(work / "backups")
    manifest = timed("nself backup", lambda: take(transport, store), results)
    timed("nself backup verify", lambda: verify(transport, store, manifest["name"]), results)
    timed(
        "nself restore (no safety backup)",
        lambda: restore(transport, store, manifest["name"], safety_backup=False),
        results,
    )
    print(
        f"  dump size: {manifest['size'] / 2**20:.0f} MiB (bare {bare.stat().st_size / 2**20:.0f}"
        " MiB)"
    )
    print(f"  backup ratio:  {results['nself backup'] / results['bare pg_dump -Fc']:.2f}x")
    restored = results["nself restore (no safety backup)"]
    print(
        f"  restore ratio: {restored / results['bare pg_restore (1 job)']:.2f}x vs 1 job, "
        f"{restored / results['bare pg_restore -j 2']:.2f}x vs -j 2"
    )
    rate = size / 2**30 / results["nself restore (no safety backup)"] * 60
    print(
        f"  restore rate: {rate:.2f} GiB of database per minute "
        f"(10 GiB in {10 / rate:.1f} min at this rate)"
    )


def bench_migrations(cluster: Cluster, count: int, work: Path) -> None:
    results: dict[str, float] = {}
    project = work / "proj"
    for n in range(1, count + 1):
        folder = project / "migrations" / f"{n:05d}_m{n}"
        folder.mkdir(parents=True)
        (folder / "up.sql").write_text(
            f"CREATE TABLE m{n} (id int PRIMARY KEY, v text);\nINSERT INTO m{n} VALUES (1, 'x');\n"
        )
        (folder / "down.sql").write_text(f"DROP TABLE m{n};\n")
    cluster.sql("CREATE DATABASE bare_mig")
    with cluster.connect("bare_mig") as conn:

        def bare() -> None:
            for n in range(1, count + 1):
                sql = (project / "migrations" / f"{n:05d}_m{n}" / "up.sql").read_bytes()
                with conn.transaction():
                    conn.execute(sql)

        timed(f"bare: the same SQL, {count} transactions", bare, results)
    cluster.sql("DROP DATABASE bare_mig")
    cluster.sql("CREATE DATABASE mig")
    transport = DirectTransport.from_url(cluster.url("mig"), cluster.bindir)
    runner = Runner(transport, project_migrations(project))
    outcome = timed(f"migrate up: {count} migrations (engine)", runner.up, results)
    assert len(outcome.applied) == count
    timed(
        "migrate up: nothing to do (engine)",
        Runner(transport, project_migrations(project)).up,
        results,
    )
    cluster.sql("DROP DATABASE mig")
    cluster.sql("CREATE DATABASE mig")
    nself = str(Path(sys.executable).parent / "nself")
    subprocess.run(
        [nself, "init", str(project / "p"), "--name", "bench"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    shutil.rmtree(project / "p" / "migrations")
    shutil.move(str(project / "migrations"), str(project / "p" / "migrations"))
    env = dict(os.environ, NSELF_DB_URL=cluster.url("mig"))
    timed(
        f"nself db migrate up: {count} migrations (CLI)",
        lambda: subprocess.run(
            [nself, "db", "migrate", "up"],
            cwd=project / "p",
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        ),
        results,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=70)
    parser.add_argument("--migrations", type=int, default=500)
    parser.add_argument("--skip-dump", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nself-bench-"))
    os.chmod(root, 0o755)
    cluster = Cluster(root / "pg")
    (root / "pg").mkdir()
    os.chmod(root / "pg", 0o755)
    cluster.init(archive_command(str(cluster.archive)))
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write(
            "archive_mode = off\nfsync = on\nsynchronous_commit = on\n"
            "max_wal_size = 4GB\nshared_buffers = 512MB\nmaintenance_work_mem = 256MB\n"
        )
    cluster.start()
    try:
        print(f"nproc={os.cpu_count()}  PostgreSQL {cluster.sql('SHOW server_version')[0][0]}")
        bench_migrations(cluster, args.migrations, root)
        if not args.skip_dump:
            bench_dump(cluster, args.scale, root)
    finally:
        cluster.stop("fast")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
