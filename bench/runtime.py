"""Benchmark the runtime on the real engine (not a test: figures go to docs/performance.md).

1. `nself start` against a bare `docker compose up -d --wait` on the same generated files,
   each from nothing (`down --volumes` before every run). Goal: ≤ 1.15×.
2. `nself health` over every service against the slowest single check, measured in the
   process (Runtime.health) so start-up does not hide whether checks run concurrently.
   Goal: ≤ 1.3×.

Needs the stand-in images (tests/standins/build.sh). Usage:

    .venv/bin/python bench/runtime.py [--runs 3] [--health-runs 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TAG = os.environ.get("NSELF_STANDIN_TAG", "4")
BIN = Path(sys.executable).parent
EXTRA_UPSTREAMS = 5  # custom services beside postgres, nginx and CS_1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(argv: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - began
    if done.returncode not in ok:
        command = " ".join(argv)
        raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return took


def make_project(root: Path) -> tuple[Path, str]:
    name = f"nselfbench{uuid.uuid4().hex[:6]}"
    folder = root / name
    run([str(BIN / "nself"), "init", str(folder), "--name", name], root)
    lines = {
        "HASURA_ENABLED": "false",  # images not obtainable here
        "AUTH_ENABLED": "false",
        "POSTGRES_IMAGE": f"nself-standin/postgres:{TAG}",
        "NGINX_IMAGE": f"nself-standin/nginx:{TAG}",
        "NGINX_HTTP_PORT": str(free_port()),
        "NGINX_HTTPS_PORT": str(free_port()),
    }
    for n in range(1, EXTRA_UPSTREAMS + 2):
        lines.update(
            {
                f"CS_{n}_NAME": f"up{n}",
                f"CS_{n}_IMAGE": f"nself-standin/http:{TAG}",
                f"CS_{n}_PORT": "8001",
                f"CS_{n}_SUBDOMAIN": f"up{n}",
            }
        )
    with (folder / ".env.local").open("a") as env:
        env.writelines(f"{k}={v}\n" for k, v in lines.items())
    run([str(BIN / "nself"), "build"], folder)
    return folder, name


def compose(folder: Path, name: str) -> list[str]:
    return [
        "docker",
        "compose",
        "-p",
        name,
        "-f",
        "docker-compose.yml",
        "--env-file",
        ".env.computed",
    ]


def bench_start(folder: Path, name: str, runs: int) -> tuple[list[float], list[float]]:
    bare, ours = [], []
    for _ in range(runs):
        run([*compose(folder, name), "down", "--volumes"], folder)
        bare.append(run([*compose(folder, name), "up", "-d", "--wait"], folder))
        run([*compose(folder, name), "down", "--volumes"], folder)
        ours.append(run([str(BIN / "nself"), "start"], folder))
    return bare, ours


def bench_health(folder: Path, runs: int, now: bool) -> tuple[list[float], dict[str, list[float]]]:
    """All services at once against each alone, in the process (start-up excluded)."""
    from nself_sdk import load_config, runtime

    rt = runtime(load_config(folder))
    names = rt.services()
    rt.health(now=now)  # warm: client connected
    together: list[float] = []
    single: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(runs):
        began = time.perf_counter()
        results = rt.health(now=now)
        together.append(time.perf_counter() - began)
        assert all(r.status == "healthy" for r in results), results
        for n in names:
            began = time.perf_counter()
            rt.health([n], now=now)
            single[n].append(time.perf_counter() - began)
    return together, single


def report_health(label: str, together: list[float], single: dict[str, list[float]]) -> None:
    t = statistics.median(together)
    slowest_name, slowest = max(
        ((n, statistics.median(v)) for n, v in single.items()), key=lambda item: item[1]
    )
    one_by_one = sum(statistics.median(v) for v in single.values())
    print(
        f"health ({label}), median of {len(together)}: all {len(single)} services "
        f"{t * 1000:.0f}ms, slowest single ({slowest_name}) {slowest * 1000:.0f}ms, "
        f"ratio {t / slowest:.2f}x (goal <= 1.3x); each alone, summed: {one_by_one * 1000:.0f}ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--health-runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder, name = make_project(Path(tmp))
        try:
            bare, ours = bench_start(folder, name, args.runs) if args.runs else ([1.0], [1.0])
            if not args.runs:
                run([str(BIN / "nself"), "start"], folder)
            probes = bench_health(folder, args.health_runs, now=False)
            active = bench_health(folder, args.health_runs, now=True)
            cli = run([str(BIN / "nself"), "health"], folder)
        finally:
            run([*compose(folder, name), "down", "--volumes"], folder)
    services = 3 + EXTRA_UPSTREAMS
    print(f"stack: {services} services (postgres, nginx, {EXTRA_UPSTREAMS + 1} custom upstreams)")
    if args.runs:
        b, o = statistics.median(bare), statistics.median(ours)
        print(f"start, median of {args.runs}: compose up -d --wait {b:.2f}s, nself start {o:.2f}s")
        print(f"  ratio {o / b:.3f}x (goal <= 1.15x); runs bare={bare} nself={ours}")
    report_health("default: the engine's latest probes", *probes)
    report_health("--now: every check run again", *active)
    print(f"`nself health` wall time including interpreter start-up: {cli:.2f}s")


if __name__ == "__main__":
    main()
