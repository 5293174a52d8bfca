"""Benchmark the database lifecycle on a real PostgreSQL (figures go to docs/performance.md).

1. Backup and restore of a pgbench database (scale 70: about 1 GB), side by side, each
   `--runs` times (alternating which goes first), medians compared:
   `nself db backup` (the whole command: a fresh process; it also counts every table in
   the dump's snapshot, dumps roles, hashes and fsyncs the files, writes the manifest)
   against bare `pg_dump -Fc -f` (which fsyncs too), and against the bare tools doing the
   same work (pg_dump in an exported snapshot, the same counts beside it, `pg_dumpall
   --globals-only`, `sha256sum`). Goal: at most 1.10x. Besides wall time it reports the CPU
   time of client and server, which other work on a shared machine disturbs less.
   `nself db restore` (the whole command: hash and table-of-contents checks, restore into
   a new database, row-count and schema comparison, the swap that keeps the previous
   database as the safety copy) against bare `CREATE DATABASE` + `pg_restore -j 1`. Goal:
   at most 1.20x. The databases each leaves behind are dropped outside the timing.
2. `migrate up` of 500 small migrations (engine, and the whole CLI). Goal: under 5 s.

Starts its own throw-away PostgreSQL 15 cluster. Usage:

    .venv/bin/python bench/database.py [--scale 70] [--runs 3] [--migrations 500]
                                       [--skip-dump] [--skip-migrations]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from nself_builtins.database.backups import TABLES_SQL  # noqa: E402
from nself_builtins.database.migrations import Runner, project_migrations  # noqa: E402
from nself_builtins.database.pitr import archive_command  # noqa: E402
from nself_builtins.database.transport import DirectTransport  # noqa: E402
from pg_cluster import PASSWORD, Cluster  # noqa: E402


def timed(label: str, fn, results: dict[str, float]):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    value = fn()
    results[label] = time.perf_counter() - started
    print(f"  {label:<44} {results[label]:8.2f} s", flush=True)
    return value


def tool(cluster: Cluster, name: str, *args: str) -> None:
    env = dict(os.environ, PGPASSWORD=PASSWORD)
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


def median(values: list[float]) -> float:
    return statistics.median(values)


def bench_dump(cluster: Cluster, scale: int, work: Path, runs: int) -> None:
    """Side by side, ``runs`` times each, alternating which goes first: the whole
    `nself db backup` / `nself db restore` commands (a fresh process each, as a user runs
    them) against bare `pg_dump -Fc` and `CREATE DATABASE` + `pg_restore -j 1`."""
    results: dict[str, float] = {}
    cluster.sql("CREATE DATABASE bench")
    timed(
        "pgbench -i",
        lambda: tool(cluster, "pgbench", "-i", "-q", "-s", str(scale), "bench"),
        results,
    )
    cluster.sql("VACUUM ANALYZE", "bench")
    size = cluster.sql("SELECT pg_database_size('bench')")[0][0]
    print(f"  database size: {size / 2**30:.2f} GiB", flush=True)
    nself = str(Path(sys.executable).parent / "nself")
    project = work / "dumpproj"
    subprocess.run(
        [nself, "init", str(project), "--name", "bench"], check=True, stdout=subprocess.DEVNULL
    )
    env = dict(os.environ, NSELF_DB_URL=cluster.url("bench"), NSELF_PG_BINDIR=str(cluster.bindir))
    installed_bytecode(env, work)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [nself, *args], cwd=project, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout

    def clock(fn, key: str) -> float:  # type: ignore[no-untyped-def]
        before = cpu_seconds(cluster)
        started = time.perf_counter()
        fn()
        wall = time.perf_counter() - started
        cpu[key].append(cpu_seconds(cluster) - before)
        return wall

    bare = work / "bare.dump"
    roles = work / "bare.globals.sql"
    kinds = ("pg_dump", "same_work", "backup", "pg_restore", "restore")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    names: list[str] = []

    def bare_dump() -> None:
        bare.unlink(missing_ok=True)
        tool(cluster, "pg_dump", "-Fc", "-f", str(bare), "bench")

    def bare_same_work() -> None:
        """What a careful operator scripts to get what `nself db backup` records, with the
        bare tools: pg_dump in an exported snapshot, an exact count of every table in that
        snapshot beside it, the roles, and a sha256 of both files."""
        bare.unlink(missing_ok=True)
        pgenv = dict(os.environ, PGPASSWORD=PASSWORD)
        conn_args = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]
        with cluster.connect("bench") as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            dump = subprocess.Popen(
                [
                    str(cluster.bindir / "pg_dump"),
                    *conn_args,
                    "-Fc",
                    f"--snapshot={snapshot}",
                    "-f",
                    str(bare),
                    "bench",
                ],
                env=pgenv,
            )
            conn.execute("SET max_parallel_workers_per_gather = 0")
            conn.execute("SET jit = off")
            for schema, table in conn.execute(TABLES_SQL).fetchall():
                conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
            with open(roles, "wb") as out:
                subprocess.run(
                    [str(cluster.bindir / "pg_dumpall"), *conn_args, "--globals-only"],
                    env=pgenv,
                    stdout=out,
                    check=True,
                )
            if dump.wait() != 0:
                raise SystemExit("pg_dump failed")
            conn.execute("COMMIT")
        subprocess.run(["sha256sum", str(bare), str(roles)], check=True, stdout=subprocess.DEVNULL)

    def nself_backup() -> None:
        out = cli("db", "backup", "--json")
        names.append(json.loads(out[out.index("{") :])["name"])

    def bare_restore() -> None:
        cluster.sql("CREATE DATABASE bare_restore")
        tool(cluster, "pg_restore", "-j", "1", "-d", "bare_restore", str(bare))

    def nself_restore() -> None:
        cli("db", "restore", names[-1])

    for run in range(runs):
        pairs = [("pg_dump", bare_dump), ("same_work", bare_same_work), ("backup", nself_backup)]
        for key, fn in pairs if run % 2 == 0 else pairs[::-1]:
            times[key].append(clock(fn, key))
        pairs = [("pg_restore", bare_restore), ("restore", nself_restore)]
        for key, fn in pairs if run % 2 == 0 else pairs[::-1]:
            times[key].append(clock(fn, key))
            # untimed: what each left (the bare copy, the database the restore kept)
            cluster.sql("DROP DATABASE IF EXISTS bare_restore")
            for (kept,) in cluster.sql(
                "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_\\_pre\\_restore\\_%'"
            ):
                cluster.sql(f'DROP DATABASE "{kept}"')
        print(
            f"  run {run + 1}: pg_dump {times['pg_dump'][-1]:.2f} s, bare same work"
            f" {times['same_work'][-1]:.2f} s, nself db backup"
            f" {times['backup'][-1]:.2f} s; pg_restore -j 1 {times['pg_restore'][-1]:.2f} s,"
            f" nself db restore {times['restore'][-1]:.2f} s",
            flush=True,
        )
    manifest = json.loads((project / "backups" / f"{names[-1]}.json").read_text())
    mib = manifest["size"] / 2**20
    print(f"  dump size: {mib:.0f} MiB (bare {bare.stat().st_size / 2**20:.0f} MiB)")
    backup, dump = median(times["backup"]), median(times["pg_dump"])
    restored, bare_restored = median(times["restore"]), median(times["pg_restore"])
    print(f"  median bare pg_dump -Fc          {dump:8.2f} s")
    same = median(times["same_work"])
    print(f"  median bare, same work           {same:8.2f} s")
    print(f"  median nself db backup           {backup:8.2f} s   ratio {backup / dump:.2f}x")
    print(f"  {'':<33}vs the bare tools doing the same work {backup / same:.2f}x")
    print(f"  median bare pg_restore -j 1      {bare_restored:8.2f} s")
    print(
        f"  median nself db restore          {restored:8.2f} s   ratio"
        f" {restored / bare_restored:.2f}x (jobs: {manifest_jobs()})"
    )
    pair_backup = median([n / b for n, b in zip(times["backup"], times["pg_dump"], strict=True)])
    pair_restore = median(
        [n / b for n, b in zip(times["restore"], times["pg_restore"], strict=True)]
    )
    print(f"  median of the per-run ratios: backup {pair_backup:.2f}x, restore {pair_restore:.2f}x")
    pair_same = median([n / b for n, b in zip(times["backup"], times["same_work"], strict=True)])
    print(f"  median of the per-run ratios: backup vs the same work {pair_same:.2f}x")
    for bare_key, ours in (
        ("pg_dump", "backup"),
        ("same_work", "backup"),
        ("pg_restore", "restore"),
    ):
        ours_cpu, bare_cpu = median(cpu[ours]), median(cpu[bare_key])
        print(
            f"  CPU (client + server) median: {bare_key} {bare_cpu:.2f} s, nself db {ours}"
            f" {ours_cpu:.2f} s   ratio {ours_cpu / bare_cpu:.2f}x"
        )
    print(f"  load average now: {os.getloadavg()[0]:.1f}")
    rate = size / 2**30 / restored * 60
    print(f"  restore rate: {rate:.2f} GiB/min (10 GiB in {10 / rate:.1f} min at this rate)")


def installed_bytecode(env: dict[str, str], work: Path) -> None:
    """Compile nself's modules once, as installing the wheel does for a user: a checkout run
    with PYTHONDONTWRITEBYTECODE would compile every module at every start. The bytecode goes
    to a folder of the run (PYTHONPYCACHEPREFIX), never into the checkout."""
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    folders = ["kernel", "plugin_sdk", "builtin_plugins", "plugin_registry"]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *(str(ROOT / f) for f in folders)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def cpu_seconds(cluster: Cluster) -> float:
    """CPU time used so far by this process's finished children (the CLI or the bare tool,
    and what they ran) plus the server's finished backends (the postmaster's reaped
    children): less sensitive to other work on the machine than wall time."""
    time.sleep(0.2)  # the postmaster reaps a backend just after its client disconnects
    own = os.times()
    pid = (cluster.data / "postmaster.pid").read_text().split()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    server = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime..cstime
    return own.children_user + own.children_system + server


def manifest_jobs() -> int:
    from nself_builtins.database.backups import jobs

    return jobs()


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
    parser.add_argument("--skip-migrations", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
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
        if not args.skip_migrations:
            bench_migrations(cluster, args.migrations, root)
        if not args.skip_dump:
            bench_dump(cluster, args.scale, root, args.runs)
    finally:
        cluster.stop("fast")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
