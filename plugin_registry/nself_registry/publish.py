"""Publisher tooling: keys, signed artifacts and a signed index from packed bundles."""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from nself_sdk import NselfError, UsageError, nself_version, write_atomic

from . import index as idx
from . import keys

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MANIFEST_FILE = "plugin.toml"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
SIG_SUFFIX = ".sig"


def keygen(out: Path, force: bool = False) -> tuple[str, str]:
    """Write ``out`` (private, PEM, 0600) and ``out.pub``; return (key id, base64 public)."""
    pub_path = out.with_name(out.name + ".pub")
    for path in (out, pub_path):
        if path.exists() and not force:
            raise UsageError(f"{path} already exists", "pass --force to replace it")
    key = keys.generate()
    raw = keys.raw_public(key.public_key())
    kid, pub = keys.key_id(raw), keys.b64(raw)
    write_atomic(out, keys.private_pem(key), 0o600)
    write_atomic(pub_path, f"{kid}:{pub}\n", 0o644)
    return kid, pub


@dataclass(frozen=True)
class Bundle:
    """What a packed archive says about itself."""

    path: Path
    name: str
    version: str
    description: str
    tier: str
    requires_nself: str
    sha256: str
    size: int


def _manifest_text(archive: Path) -> str:
    """The ``plugin.toml`` at the root of the archive's single top folder (or its root)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                name = member.name.removeprefix("./")
                top_level = name == MANIFEST_FILE
                one_down = name.count("/") == 1 and name.endswith("/" + MANIFEST_FILE)
                if member.isfile() and (top_level or one_down):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        return handle.read(1 << 20).decode()
    except (tarfile.TarError, OSError, UnicodeDecodeError, EOFError) as exc:
        raise NselfError(
            f"{archive}: cannot read the bundle ({exc})", "re-pack it with `nself plugin pack`"
        ) from None
    raise NselfError(f"{archive}: no {MANIFEST_FILE} inside", "re-pack it with `nself plugin pack`")


def read_bundle(archive: Path) -> Bundle:
    """Name, version, tier and nself range of a packed bundle, from its checked manifest."""
    from nself_builtins.shared.manifest import parse_manifest

    manifest = parse_manifest(_manifest_text(archive), f"{archive.name}:{MANIFEST_FILE}")
    return Bundle(
        path=archive,
        name=manifest.name,
        version=manifest.version,
        description=manifest.description,
        tier=manifest.tier,
        requires_nself=manifest.requires_nself,
        sha256=hashlib.sha256(archive.read_bytes()).hexdigest(),
        size=archive.stat().st_size,
    )


def min_version(requirement: str) -> str:
    """The lowest nself a ``requires_nself`` range admits (0.0.0 when unbounded)."""
    from nself_builtins.shared.manifest import parse_range

    lows = [str(v) for op, v in parse_range(requirement) if op in (">=", "==", ">")]
    if not lows:
        return "0.0.0"
    import semver

    return str(max(semver.Version.parse(v) for v in lows))


def artifact_for(bundle: Bundle, url: str) -> idx.Artifact:
    return idx.Artifact(
        name=bundle.name,
        version=bundle.version,
        sha256=bundle.sha256,
        size=bundle.size,
        url=url,
        min_nself=min_version(bundle.requires_nself),
        license_required=bundle.tier != "free",
        publisher="",
        signature="",
        tier=bundle.tier,
        requires_nself=bundle.requires_nself,
        description=bundle.description,
    )


def sign_archive(archive: Path, key: Ed25519PrivateKey) -> Path:
    """``nself plugin sign``: a detached publisher signature beside the archive."""
    bundle = read_bundle(archive)
    signed = idx.sign_artifact(key, artifact_for(bundle, ""))
    out = archive.with_name(archive.name + SIG_SUFFIX)
    doc = {"publisher": signed.publisher, "signature": signed.signature, "sha256": bundle.sha256}
    write_atomic(out, json.dumps(doc, indent=2) + "\n")
    return out


def _signed(bundle: Bundle, url: str, key: Ed25519PrivateKey) -> idx.Artifact:
    from dataclasses import replace

    artifact = artifact_for(bundle, url)
    sig_path = bundle.path.with_name(bundle.path.name + SIG_SUFFIX)
    if not sig_path.is_file():
        return idx.sign_artifact(key, artifact)
    try:
        doc = keys.loads(sig_path.read_text())
        signed = replace(artifact, publisher=str(doc["publisher"]), signature=str(doc["signature"]))
        sha256 = str(doc["sha256"])
    except (ValueError, KeyError, TypeError):
        raise NselfError(
            f"{sig_path} is not a signature file", "re-sign with `nself plugin sign`"
        ) from None
    if sha256 != bundle.sha256:
        raise NselfError(
            f"{sig_path} signs other bytes than {bundle.path.name} (sha256 {sha256[:16]}…, "
            f"the archive has {bundle.sha256[:16]}…)",
            "the archive was packed again after it was signed: sign it again with "
            "`nself plugin sign`",
        )
    return signed


def archives(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder of packed plugins")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(ARCHIVE_SUFFIXES))
    if not found:
        raise UsageError(
            f"no packed plugins (*.tar.gz) in {folder}", "pack them with `nself plugin pack`"
        )
    return found


@dataclass(frozen=True)
class Published:
    """What ``publish`` wrote: the new index, and versions withdrawn because their archive
    is gone from ``out/artifacts`` (still remembered, never re-releasable)."""

    index: idx.Index
    withdrawn: tuple[idx.Released, ...]


def _previous(out: Path, signers: list[Ed25519PrivateKey], extra_keys: str) -> idx.Index | None:
    """The index already in ``out``, verified with the signing keys (or ``extra_keys``)."""
    path = out / "index.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        raise NselfError(f"{path} is not an index", "move it away first") from None
    if isinstance(doc, dict) and isinstance(doc.get("signed"), dict):
        old_format = doc["signed"].get("format")
        if old_format != idx.FORMAT:
            raise NselfError(
                f"{path} has index format {old_format!r}, not {idx.FORMAT}",
                "publish into a new folder (clients remember what they accepted)",
            )
    return idx.verify_document(doc, extra_keys or _own_keys(signers))


def publish(
    bundles: Path,
    out: Path,
    key: Ed25519PrivateKey | list[Ed25519PrivateKey],
    name: str = "nself",
    valid_for: timedelta = timedelta(days=30),
    version: int | None = None,
    extra_keys: str = "",
) -> Published:
    """Copy the archives into ``out/artifacts`` and write a signed ``out/index.json``.

    The index version is one more than the one already in ``out`` (or ``version``, which
    must be higher). A name and version the previous index offered or remembers as
    withdrawn can only be published again with the same bytes, whether or not its archive
    is still there. Every artifact is checked against the new index before it is written.
    """
    signers = key if isinstance(key, list) else [key]
    if valid_for > idx.MAX_VALIDITY or valid_for <= timedelta(0):
        raise UsageError(
            f"an index may be valid for 1 to {idx.MAX_VALIDITY.days} days",
            "clients refuse an index valid for longer; publish again before it expires",
        )
    old = _previous(out, signers, extra_keys)
    previous = old.version if old else 0
    released = old.released() if old else {}
    new_version = previous + 1 if version is None else version
    if new_version <= previous:
        raise UsageError(
            f"index version {new_version} is not above the published version {previous}",
            "an index version only goes up",
        )
    artifacts_dir = out / "artifacts"
    entries: list[idx.Artifact] = []
    copies: list[tuple[Path, Path]] = []
    seen: set[str] = set()
    for archive in archives(bundles):
        bundle = read_bundle(archive)
        spec = idx.release(bundle.name, bundle.version)
        if spec in seen:
            raise UsageError(f"{bundle.name} {bundle.version} is in {bundles} twice")
        seen.add(spec)
        target = artifacts_dir / f"{bundle.name}-{bundle.version}.tar.gz"
        before = released.get(spec)
        if before is None and target.exists():
            before = hashlib.sha256(target.read_bytes()).hexdigest()
        if before is not None and before != bundle.sha256:
            raise UsageError(
                f"{bundle.name} {bundle.version} was already published with other content "
                f"(sha256 {before[:16]}…)",
                "publish a new version instead of changing a released one",
            )
        entries.append(_signed(bundle, f"artifacts/{target.name}", signers[0]))
        if not target.exists():
            copies.append((archive, target))
    withdrawn: list[idx.Released] = list(old.withdrawn) if old else []
    gone: list[idx.Released] = []
    for artifact in old.artifacts if old else ():
        if artifact.spec in seen:
            continue
        if (out / artifact.url).is_file():
            entries.append(artifact)
        else:
            gone.append(idx.Released(artifact.name, artifact.version, artifact.sha256))
    offered = {a.spec for a in entries}
    withdrawn = [w for w in withdrawn + gone if w.spec not in offered]
    doc = idx.sign_index(signers, name, new_version, entries, valid_for, withdrawn=withdrawn)
    found = idx.verify_document(doc, extra_keys or _own_keys(signers))
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    for archive, target in copies:
        write_atomic(target, archive.read_bytes(), 0o644)
    write_atomic(out / "index.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return Published(found, tuple(gone))


def _own_keys(signers: list[Ed25519PrivateKey]) -> str:
    pairs = []
    for key in signers:
        raw = keys.raw_public(key.public_key())
        pairs.append(f"{keys.key_id(raw)}:{keys.b64(raw)}")
    return ",".join(pairs)


__all__ = ["keygen", "nself_version", "publish", "read_bundle", "sign_archive"]
