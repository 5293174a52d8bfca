#!/usr/bin/env python3
"""Benchmark (not a test): what plugin bundles add to `nself build`.

Two projects, built in fresh processes as a user runs them: one without bundles, one with
the three catalogue bundles installed (pgbouncer, ntfy, audit). The difference is the cost
of loading bundles: reading plugins.lock, re-hashing every bundle, parsing manifests and
checking requires_nself, plus their services, routes and files.

    .venv/bin/python bench/plugins.py [--runs 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).with_name("nself")
CATALOGUE = Path(__file__).resolve().parent.parent / "plugin_registry" / "catalogue"
BUNDLES = ("pgbouncer", "ntfy", "audit")


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


CPU: dict[Path, list[float]] = {}


def nself(args: list[str], cwd: Path) -> float:
    """Wall time of one run; its CPU time (user + system) is kept in CPU[cwd]."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([str(BIN), *args], cwd=cwd, env=ENV, capture_output=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"nself {' '.join(args)} failed:\n{done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault(cwd, []).append(cpu)
    return elapsed


def summary(times: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain, bundled = Path(tmp) / "plain", Path(tmp) / "bundled"
        for folder in (plain, bundled):
            nself(["init", str(folder)], Path(tmp))
        for name in BUNDLES:
            nself(["plugin", "install", str(CATALOGUE / name)], bundled)
        for _ in range(3):  # warm byte-code and file caches
            nself(["build"], plain)
            nself(["build"], bundled)
        times: dict[str, list[float]] = {"without_bundles": [], "with_3_bundles": []}
        CPU.clear()
        for _ in range(opts.runs):  # interleaved, so load changes hit both alike
            times["without_bundles"].append(nself(["build"], plain))
            times["with_3_bundles"].append(nself(["build"], bundled))
        cpu = {
            "without_bundles": statistics.median(CPU[plain]),
            "with_3_bundles": statistics.median(CPU[bundled]),
        }
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "runs": opts.runs,
        **{key: summary(values) for key, values in times.items()},
        "cpu_median_s": {key: round(value, 4) for key, value in cpu.items()},
    }
    result["overhead_median_s"] = round(
        result["with_3_bundles"]["median_s"] - result["without_bundles"]["median_s"], 4
    )
    if opts.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {result['machine']}; load average {result['load_average']}")
    for key in times:
        s = result[key]
        print(f"build {key:<16} median {s['median_s']:.3f} s (min {s['min_s']:.3f})")
    print(f"bundles add {result['overhead_median_s'] * 1000:.0f} ms (median wall time)")
    c = result["cpu_median_s"]
    print(
        f"CPU time median: {c['without_bundles']:.3f} s without, "
        f"{c['with_3_bundles']:.3f} s with bundles "
        f"(+{(c['with_3_bundles'] - c['without_bundles']) * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
