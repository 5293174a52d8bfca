"""Registry client costs: verifying a large signed index, and licence verification.

Run: .venv/bin/python bench/bench_registry.py   (figures go to docs/performance.md)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from nself_registry import index as idx
from nself_registry import keys, licensing


def best(fn: object, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    registry, licence = keys.generate(), keys.generate()
    folder = Path(tempfile.mkdtemp())
    trusted = folder / "keys.json"

    def pair(key: object) -> dict[str, str]:
        raw = keys.raw_public(key.public_key())  # type: ignore[attr-defined]
        return {keys.key_id(raw): keys.b64(raw)}

    trusted.write_text(json.dumps({"registry": pair(registry), "license": pair(licence)}))
    os.environ[keys.TEST_KEYS_VAR] = str(trusted)
    artifacts = []
    for n in range(500):
        artifact = idx.Artifact(
            name=f"plugin-{n}",
            version="1.0.0",
            sha256="0" * 64,
            size=1000,
            url=f"artifacts/plugin-{n}-1.0.0.tar.gz",
            min_nself="0.1.0",
            license_required=False,
            publisher="",
            signature="",
        )
        artifacts.append(idx.sign_artifact(registry, artifact))
    doc = json.loads(json.dumps(idx.sign_index(registry, "bench", 1, artifacts, timedelta(days=1))))
    verify = best(lambda: idx.verify_document(doc))
    key = licensing.issue(licence, "lic_bench", expires=int(time.time()) + 86400)
    parse = best(lambda: licensing.parse(key), runs=50)
    # what `nself build` does per pro plugin: offline check against a fresh signed answer
    os.environ["NSELF_HOME"] = str(folder / "home")
    os.environ[licensing.KEY_VAR] = key
    lic = licensing.parse(key)
    answer = {"type": "nself-ping-answer", "lid": lic.lid, "status": "valid", "nonce": "x"}
    answer["time"] = int(time.time())
    licensing.save_state({"lid": lic.lid, "answer": licensing.sign_answer(licence, answer)})
    use = best(lambda: licensing.check("ai", "pro", "use", "http://127.0.0.1:9"), runs=20)
    print(f"verify a 500-artifact index: {verify * 1000:.1f} ms")
    print(f"verify a licence key offline: {parse * 1000:.2f} ms")
    print(f"build-time licence check of one pro plugin: {use * 1000:.2f} ms")


if __name__ == "__main__":
    main()
