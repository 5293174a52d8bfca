#!/usr/bin/env python3
"""Benchmark (not a test): wall time of `nself build` for the full stack and `nself --version`.

Every run is a fresh process, so the figures include interpreter start-up, imports and
plugin discovery, exactly what a user waits for. The project has every optional service
switched on (each declared ``*_ENABLED`` setting that is not on by default, monitoring
included, and a database replica for the read-only Hasura) and three custom services.
Byte-code caches are allowed (as after any normal install).

    .venv/bin/python bench/startup.py [--runs 30] [--json]

Goals (docs/performance.md): build <= 0.25 s median, --version <= 0.15 s median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).with_name("nself")


CPU: dict[str, list[float]] = {}


def run(args: list[str], cwd: Path, env: dict[str, str], label: str = "") -> float:
    """Wall time of one fresh ``nself`` process; its CPU time is kept under ``label``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"nself {' '.join(args)} failed:\n{done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault(label, []).append(cpu)
    return elapsed


def full_stack(folder: Path, env: dict[str, str]) -> list[str]:
    subprocess.run(
        [str(BIN), "init", str(folder), "--name", "bench"], env=env, check=True, capture_output=True
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "kernel"))
    from nself.plugins import make_manager

    switches = sorted(
        s.name
        for settings in make_manager().hook.declare_settings()
        for s in settings
        if s.name.endswith("_ENABLED") and (s.default or "").lower() != "true"
    )
    lines = [f"{name}=true" for name in switches]
    lines.append("POSTGRES_REPLICAS=replica1")  # the read-only Hasura needs a replica
    for n, (name, port) in enumerate([("ping_api", 8001), ("worker", 8002), ("shop", 8003)], 1):
        lines += [
            f"CS_{n}_NAME={name}",
            f"CS_{n}_IMAGE=nself-standin/http:3",
            f"CS_{n}_PORT={port}",
            f"CS_{n}_SUBDOMAIN={name.split('_')[0]}",
            f"CS_{n}_ENV_DATABASE_URL=${{DATABASE_URL}}",
        ]
    with open(folder / ".env.local", "a") as handle:
        handle.write("\n".join(lines) + "\n")
    return switches


def summary(times: list[float], label: str) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "median_cpu_s": round(statistics.median(CPU[label]), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bench"
        switches = full_stack(folder, env)
        out = subprocess.run(
            [str(BIN), "build", "--json"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        services = json.loads(out.stdout)["services"]
        for _ in range(3):  # warm the byte-code and file caches
            run(["build"], folder, env)
            run(["--version"], folder, env)
        unchanged = [run(["build"], folder, env, "build_unchanged") for _ in range(opts.runs)]
        # With an option to parse, Typer and every plugin's commands load as well.
        checked = [run(["build", "--check"], folder, env, "build_check") for _ in range(opts.runs)]
        changed = []
        local = folder / ".env.local"
        base = local.read_text()
        for i in range(opts.runs):
            local.write_text(base + f"NGINX_CLIENT_MAX_BODY_SIZE={10 + i % 2}m\n")
            changed.append(run(["build"], folder, env, "build_after_a_change"))
        version = [run(["--version"], folder, env, "version") for _ in range(opts.runs)]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "services": len(services),
        "optional_switches": switches,
        "runs": opts.runs,
        "build_unchanged": summary(unchanged, "build_unchanged"),
        "build_after_a_change": summary(changed, "build_after_a_change"),
        "build_check": summary(checked, "build_check"),
        "version": summary(version, "version"),
    }
    if opts.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {result['machine']}; load average {result['load_average']}")
    print(f"stack: {len(services)} services ({', '.join(services)})")
    for key in ("build_unchanged", "build_after_a_change", "build_check", "version"):
        s = result[key]
        print(
            f"{key:<22} median {s['median_s']:.3f} s  "
            f"(min {s['min_s']:.3f}, max {s['max_s']:.3f}; CPU median {s['median_cpu_s']:.3f} s; "
            f"{opts.runs} runs)"
        )


if __name__ == "__main__":
    main()
