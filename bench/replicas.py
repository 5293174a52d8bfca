"""Benchmark a read replica under a write load (not a test: figures go to docs/performance.md).

A stack with the postgres stand-in as primary and one replica (`POSTGRES_REPLICAS`), a
pgbench database (scale 10), then runs that alternate:

* with the replica streaming: pgbench's TPC-B-like load on the primary for ``--seconds``
  (``--clients`` clients), while the primary's ``pg_stat_replication`` is sampled every
  0.25 s (replay lag in bytes and seconds) and a marker row is written every second and
  timed until the replica shows it (what a reader waits for);
* with the replica stopped: the same load, for the primary's throughput without a
  replica to feed (the bare figure, same run, same machine); then the replica is started
  and timed until it has caught up from its slot.

Needs the stand-in images (tests/standins/build.sh). Usage:

    .venv/bin/python bench/replicas.py [--runs 3] [--seconds 20] [--clients 4]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

TAG = os.environ.get("NSELF_STANDIN_TAG", "4")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def nself(folder: Path, *args: str) -> str:
    done = subprocess.run([str(BIN / "nself"), *args], cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"nself {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def address(name: str, service: str) -> str:
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={name}",
         "--filter", f"label=com.docker.compose.service={service}"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
         ids[0]],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def connect(host: str, password: str) -> Any:
    import psycopg

    return psycopg.connect(
        host=host, user="postgres", password=password, dbname="nself", autocommit=True
    )


def pgbench(folder: Path, seconds: int, clients: int) -> float:
    out = nself(
        folder, "exec", "postgres", "--", "pgbench", "-U", "postgres", "-c", str(clients),
        "-j", str(min(clients, 2)), "-T", str(seconds), "nself",
    )  # fmt: skip
    found = re.search(r"tps = ([0-9.]+)", out)
    if found is None:
        raise SystemExit(f"no tps in pgbench's output:\n{out}")
    return float(found.group(1))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


class Watch:
    """Samples replay lag on the primary and times marker rows on the replica."""

    def __init__(self, primary: str, replica: str, password: str) -> None:
        self.primary, self.replica, self.password = primary, replica, password
        self.lag_bytes: list[float] = []
        self.lag_seconds: list[float] = []
        self.visible: list[float] = []
        self.stop = threading.Event()

    def sample(self) -> None:
        with connect(self.primary, self.password) as conn:
            while not self.stop.is_set():
                row = conn.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn),"
                    " extract(epoch FROM replay_lag) FROM pg_stat_replication"
                ).fetchone()
                if row is not None:
                    self.lag_bytes.append(float(row[0] or 0))
                    self.lag_seconds.append(float(row[1] or 0))
                time.sleep(0.25)

    def markers(self) -> None:
        with (
            connect(self.primary, self.password) as writer,
            connect(self.replica, self.password) as reader,
        ):
            while not self.stop.is_set():
                n = writer.execute(
                    "INSERT INTO bench_marker DEFAULT VALUES RETURNING n"
                ).fetchone()[0]
                began = time.perf_counter()
                while not reader.execute(
                    "SELECT 1 FROM bench_marker WHERE n = %s", (n,)
                ).fetchone():
                    time.sleep(0.002)
                self.visible.append(time.perf_counter() - began)
                time.sleep(1)

    def __enter__(self) -> Watch:
        self.threads = [threading.Thread(target=self.sample), threading.Thread(target=self.markers)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def caught_up(primary: str, password: str, timeout: float = 300) -> float:
    began = time.perf_counter()
    with connect(primary, password) as conn:
        while time.perf_counter() - began < timeout:
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication"
            ).fetchone()
            if row is not None and row[0] == 0:
                return time.perf_counter() - began
            time.sleep(0.05)
    raise SystemExit("the replica did not catch up")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nself-bench-replicas-"))
    name = f"nselfbenchrepl{uuid.uuid4().hex[:6]}"
    folder = root / name
    subprocess.run([str(BIN / "nself"), "init", str(folder), "--name", name], check=True,
                   capture_output=True)  # fmt: skip
    with (folder / ".env.local").open("a") as env:
        env.write(
            "HASURA_ENABLED=false\nAUTH_ENABLED=false\nSSL_MODE=local\n"
            f"POSTGRES_IMAGE=nself-standin/postgres:{TAG}\nNGINX_IMAGE=nself-standin/nginx:{TAG}\n"
            f"NGINX_HTTP_PORT={free_port()}\nNGINX_HTTPS_PORT={free_port()}\n"
            "POSTGRES_REPLICAS=replica1\n"
        )
    try:
        nself(folder, "start", "postgres", "postgres-replica1", "--timeout", "180")
        password = next(
            line.split("=", 1)[1].strip().strip("'")
            for line in (folder / ".env.computed").read_text().splitlines()
            if line.startswith("POSTGRES_PASSWORD=")
        )
        nself(folder, "exec", "postgres", "--", "pgbench", "-U", "postgres", "-i", "-s", "10",
              "-q", "nself")  # fmt: skip
        primary, replica = address(name, "postgres"), address(name, "postgres-replica1")
        with connect(primary, password) as conn:
            conn.execute("CREATE TABLE bench_marker (n serial PRIMARY KEY)")
        caught_up(primary, password)
        rows = []
        for run in range(1, args.runs + 1):
            with Watch(primary, replica, password) as watch:
                tps_with = pgbench(folder, args.seconds, args.clients)
            nself(folder, "stop", "postgres-replica1")
            tps_without = pgbench(folder, args.seconds, args.clients)
            with connect(primary, password) as conn:
                behind = conn.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) FROM"
                    " pg_replication_slots WHERE slot_name = 'nself_replica_replica1'"
                ).fetchone()[0]  # type: ignore[index]
            began = time.perf_counter()
            nself(folder, "start", "postgres-replica1", "--timeout", "180")
            replica = address(name, "postgres-replica1")
            catchup = time.perf_counter() - began + caught_up(primary, password)
            rows.append(
                {
                    "run": run,
                    "tps_with": tps_with,
                    "tps_without": tps_without,
                    "lag_bytes_p50": pct(watch.lag_bytes, 0.5),
                    "lag_bytes_p95": pct(watch.lag_bytes, 0.95),
                    "lag_bytes_max": max(watch.lag_bytes),
                    "lag_s_p95": pct(watch.lag_seconds, 0.95),
                    "lag_s_max": max(watch.lag_seconds),
                    "visible_p50": pct(watch.visible, 0.5),
                    "visible_max": max(watch.visible),
                    "markers": len(watch.visible),
                    "behind_mb": float(behind) / 1e6,
                    "catchup_s": catchup,
                    "load": os.getloadavg()[0],
                }
            )
            print(rows[-1], flush=True)
        print()
        print(
            "| run | tps, replica streaming | tps, replica stopped | replay lag p50 / p95 /"
            " max (bytes) | replay_lag p95 / max (s) | marker row on the replica, median /"
            " max | WAL behind after the stopped run | start + catch-up | load avg |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            visible = f"{r['visible_p50'] * 1000:.1f} / {r['visible_max'] * 1000:.1f} ms"
            lag = f"{r['lag_bytes_p50']:.0f} / {r['lag_bytes_p95']:.0f} / {r['lag_bytes_max']:.0f}"
            print(
                f"| {r['run']} | {r['tps_with']:.0f} | {r['tps_without']:.0f} | {lag} | "
                f"{r['lag_s_p95']:.3f} / {r['lag_s_max']:.3f} | {visible} ({r['markers']} rows) | "
                f"{r['behind_mb']:.0f} MB | {r['catchup_s']:.1f} s | {r['load']:.1f} |"
            )
        ratio = statistics.median(r["tps_with"] / r["tps_without"] for r in rows)
        print(f"\nmedian tps ratio, streaming / stopped: {ratio:.2f}")
    finally:
        label = f"label=com.docker.compose.project={name}"
        for kind, listing in (("container", ["ps", "-aq"]), ("network", ["network", "ls", "-q"]),
                              ("volume", ["volume", "ls", "-q"])):  # fmt: skip
            found = subprocess.run(["docker", *listing, "--filter", label], capture_output=True,
                                   text=True).stdout.split()  # fmt: skip
            if found:
                rm = ["rm", "-f", "-v"] if kind == "container" else [kind, "rm"]
                subprocess.run(["docker", *rm, *found], capture_output=True)


if __name__ == "__main__":
    main()
