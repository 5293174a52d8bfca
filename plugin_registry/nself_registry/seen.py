"""What this machine accepted from each registry: its newest index, and the bytes of every
version it ever saw released.

The memory is kept by the registry's identity, the registry keys that signed its index,
not by how its URL is spelled (``http://127.0.0.1:8001/`` and ``http://localhost:8001/`` are
one registry), and outside the download cache: clearing the cache never forgets it. One
file per key id in ``$NSELF_HOME/registry/``; an index signed by several trusted keys (a key
rotation) is checked against, and remembered under, each of them.

    {"version": 12, "digest": "<sha256 of the signed part>", "fetched": "...Z",
     "released": {"pgbouncer@1.0.0": "<sha256 of the archive>", ...}}

A released version never changes: an index that offers other bytes under a name and
version this machine already accepted is refused whole, whatever the server signs. And
whatever registry offers it: the bytes of every version this machine downloaded are also
kept across registries (``downloaded.json``), so another trusted registry key cannot hand
over other bytes under a name and version installed before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nself_sdk import write_atomic

from . import index as idx
from . import keys, paths

CHANGED_HINT = "a released version never changes; the registry was altered, tell its operator"


@dataclass
class Memory:
    version: int = 0
    digest: str = ""
    fetched: str = ""
    released: dict[str, str] = field(default_factory=dict)


def digest(doc: Any) -> str:
    """The identity of one index document: the SHA-256 of its canonical signed part."""
    signed = doc.get("signed") if isinstance(doc, dict) else None
    return hashlib.sha256(keys.canonical(signed)).hexdigest()


def _path(kid: str) -> Path:
    return paths.home() / "registry" / f"{kid}.json"


def _read(kid: str) -> Memory:
    try:
        data = json.loads(_path(kid).read_text())
    except (OSError, ValueError):
        return Memory()
    if not isinstance(data, dict):
        return Memory()
    released = data.get("released")
    return Memory(
        version=int(data.get("version", 0)) if isinstance(data.get("version"), int) else 0,
        digest=str(data.get("digest", "")),
        fetched=str(data.get("fetched", "")),
        released=(
            {str(k): str(v) for k, v in released.items()} if isinstance(released, dict) else {}
        ),
    )


def recall(kids: tuple[str, ...]) -> Memory:
    """What was accepted under any of ``kids``: the newest index, every released version."""
    merged = Memory()
    for kid in kids:
        known = _read(kid)
        if known.version > merged.version:
            merged.version, merged.digest, merged.fetched = (
                known.version,
                known.digest,
                known.fetched,
            )
        for spec, sha in known.released.items():
            merged.released.setdefault(spec, sha)
    return merged


def check(found: idx.Index, doc_digest: str, memory: Memory) -> None:
    """Refuse an index that goes back, changes in place, or re-releases a version."""
    if found.version < memory.version:
        raise idx.IndexError_(
            f"registry index version {found.version} is older than version {memory.version} "
            "already seen (rollback or stale mirror)",
            "refusing to go back; tell the registry operator",
        )
    if found.version == memory.version and memory.digest and memory.digest != doc_digest:
        raise idx.IndexError_(
            f"registry index version {found.version} changed without a new version number",
            "refusing it; tell the registry operator",
        )
    for spec, sha in sorted(found.released().items()):
        before = memory.released.get(spec)
        if before is not None and before != sha:
            name, _, version = spec.partition("@")
            raise idx.IndexError_(
                f"registry index version {found.version} offers {name} {version} with other "
                f"bytes (sha256 {sha[:16]}…) than the ones this machine accepted before "
                f"(sha256 {before[:16]}…): refused",
                CHANGED_HINT,
            )


def remember(found: idx.Index, doc_digest: str) -> None:
    """Record an accepted index under every key that signed it (re-read just before
    writing, so two nself processes lose nothing of each other's)."""
    for kid in found.signed_by:
        known = _read(kid)
        if found.version >= known.version:
            known.version, known.digest = found.version, doc_digest
        known.fetched = idx.stamp(idx.now())
        for spec, sha in found.released().items():
            known.released.setdefault(spec, sha)
        paths.private_dir(_path(kid).parent)
        body = {
            "version": known.version,
            "digest": known.digest,
            "fetched": known.fetched,
            "released": dict(sorted(known.released.items())),
        }
        write_atomic(_path(kid), json.dumps(body, indent=1) + "\n", 0o600)


def _downloads() -> Path:
    return paths.home() / "registry" / "downloaded.json"


def _read_downloads() -> dict[str, str]:
    try:
        data = json.loads(_downloads().read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def check_download(artifact: idx.Artifact) -> None:
    """Refuse an artifact whose name and version this machine downloaded with other bytes,
    from any registry."""
    before = _read_downloads().get(artifact.spec)
    if before is not None and before != artifact.sha256:
        raise idx.IndexError_(
            f"the registry offers {artifact.name} {artifact.version} with other bytes (sha256 "
            f"{artifact.sha256[:16]}…) than the ones this machine downloaded before (sha256 "
            f"{before[:16]}…): refused",
            CHANGED_HINT,
        )


def remember_download(artifact: idx.Artifact) -> None:
    known = _read_downloads()
    if known.get(artifact.spec) == artifact.sha256:
        return
    known.setdefault(artifact.spec, artifact.sha256)
    paths.private_dir(_downloads().parent)
    write_atomic(_downloads(), json.dumps(dict(sorted(known.items())), indent=1) + "\n", 0o600)
