"""The signed registry index: what a registry offers, and proof that it said so.

On disk and on the wire an index is one JSON document::

    {"signed": {"type": "nself-registry-index", "format": 1, "name": "...",
                "version": 7, "issued": "2026-11-27T13:00:00Z",
                "expires": "2026-12-27T13:00:00Z", "artifacts": [ ... ]},
     "signatures": [{"keyid": "3b3ce265aa1d0c2c", "sig": "BASE64"}]}

Each signature covers ``b"nself-registry-index-v1\\x00" + canonical(signed)`` (sorted keys,
no spaces, UTF-8). ``version`` only goes up; clients refuse an index older than the last one
they accepted, and any index past ``expires``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nself_sdk import NselfError

from . import keys

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TYPE = "nself-registry-index"
FORMAT = 1
NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
HINT = "the registry or the network served something nself cannot trust; tell its operator"


class IndexError_(NselfError):
    """The index cannot be trusted or used."""


@dataclass(frozen=True)
class Artifact:
    """One packed plugin version the registry offers."""

    name: str
    version: str
    sha256: str
    size: int
    url: str
    min_nself: str
    license_required: bool
    publisher: str
    signature: str
    tier: str = "free"
    requires_nself: str = ""
    description: str = ""

    def payload(self) -> bytes:
        """What the publisher signs: identity and content of the archive."""
        return keys.canonical(
            {"name": self.name, "version": self.version, "sha256": self.sha256, "size": self.size}
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Index:
    name: str
    version: int
    issued: datetime
    expires: datetime
    artifacts: tuple[Artifact, ...]
    signed_by: str = ""

    def versions(self, name: str) -> list[Artifact]:
        """Every version of ``name``, oldest first."""
        import semver

        found = [a for a in self.artifacts if a.name == name]
        return sorted(found, key=lambda a: semver.Version.parse(a.version))

    def latest(self, name: str) -> Artifact | None:
        found = self.versions(name)
        return found[-1] if found else None

    def names(self) -> list[str]:
        return sorted({a.name for a in self.artifacts})


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(text: Any, what: str) -> datetime:
    if not isinstance(text, str):
        raise IndexError_(f"registry index: {what} is missing", HINT)
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise IndexError_(f"registry index: {what}={text!r} is not a UTC time", HINT) from None


def now() -> datetime:
    return datetime.now(UTC)


def sign_index(
    key: Ed25519PrivateKey,
    name: str,
    version: int,
    artifacts: list[Artifact],
    valid_for: timedelta,
    issued: datetime | None = None,
) -> dict[str, Any]:
    """The signed JSON document for these artifacts."""
    issued = issued or now()
    signed = {
        "type": TYPE,
        "format": FORMAT,
        "name": name,
        "version": version,
        "issued": stamp(issued),
        "expires": stamp(issued + valid_for),
        "artifacts": [a.as_json() for a in sorted(artifacts, key=lambda a: (a.name, a.version))],
    }
    kid = keys.key_id(key.public_key())
    sig = keys.sign(key, keys.DOMAIN_INDEX, keys.canonical(signed))
    return {"signed": signed, "signatures": [{"keyid": kid, "sig": sig}]}


def sign_artifact(key: Ed25519PrivateKey, artifact: Artifact) -> Artifact:
    from dataclasses import replace

    kid = keys.key_id(key.public_key())
    unsigned = replace(artifact, publisher=kid, signature="")
    return replace(unsigned, signature=keys.sign(key, keys.DOMAIN_ARTIFACT, unsigned.payload()))


def verify_document(doc: Any, extra_keys: str = "") -> Index:
    """Check the signature and shape of an index document (not its freshness)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("signed"), dict):
        raise IndexError_("registry index is malformed (no signed part)", HINT)
    signatures = doc.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise IndexError_("registry index is not signed", HINT)
    signed = doc["signed"]
    trusted = keys.trusted("registry", extra_keys)
    payload = keys.canonical(signed)
    unknown: list[str] = []
    signed_by = ""
    for entry in signatures:
        if not isinstance(entry, dict):
            continue
        kid, sig = str(entry.get("keyid", "")), str(entry.get("sig", ""))
        key = trusted.get(kid)
        if key is None:
            unknown.append(kid)
            continue
        if keys.verify(key, keys.DOMAIN_INDEX, payload, sig):
            signed_by = kid
            break
    if not signed_by:
        if unknown and len(unknown) == len(signatures):
            why = keys.describe_unknown("registry", unknown[0])
            raise IndexError_(
                f"registry index is signed by an untrusted key: {why}",
                "for a private registry, add its key to NSELF_REGISTRY_KEYS",
            )
        raise IndexError_("registry index signature does not verify (tampered index?)", HINT)
    return _parse(signed, signed_by)


def _parse(signed: dict[str, Any], signed_by: str) -> Index:
    if signed.get("type") != TYPE or signed.get("format") != FORMAT:
        raise IndexError_(
            f"registry index has type {signed.get('type')!r} format {signed.get('format')!r}",
            "upgrade nself to read this registry",
        )
    version = signed.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise IndexError_("registry index: version must be a positive whole number", HINT)
    items = signed.get("artifacts")
    if not isinstance(items, list):
        raise IndexError_("registry index: artifacts must be a list", HINT)
    artifacts = [_artifact(raw) for raw in items]
    return Index(
        name=str(signed.get("name", "")),
        version=version,
        issued=parse_stamp(signed.get("issued"), "issued"),
        expires=parse_stamp(signed.get("expires"), "expires"),
        artifacts=tuple(artifacts),
        signed_by=signed_by,
    )


def verify_publisher(artifact: Artifact, extra_keys: str = "") -> None:
    """Check the publisher's own signature of one artifact (done before it is downloaded).

    The index signature already vouches for every entry; this adds the publisher's word,
    and is only checked for the artifact about to be used (an index may list thousands).
    """
    key = keys.trusted("registry", extra_keys).get(artifact.publisher)
    if key is None:
        why = keys.describe_unknown("registry", artifact.publisher)
        raise IndexError_(
            f"{artifact.name} {artifact.version} is published by an untrusted key ({why})",
            "for a private registry, add its key to NSELF_REGISTRY_KEYS",
        )
    if not keys.verify(key, keys.DOMAIN_ARTIFACT, artifact.payload(), artifact.signature):
        raise IndexError_(
            f"the publisher signature of {artifact.name} {artifact.version} does not verify",
            HINT,
        )


def _artifact(raw: Any) -> Artifact:
    import semver

    if not isinstance(raw, dict):
        raise IndexError_("registry index: an artifact entry is not an object", HINT)
    try:
        artifact = Artifact(
            name=str(raw["name"]),
            version=str(raw["version"]),
            sha256=str(raw["sha256"]),
            size=int(raw["size"]),
            url=str(raw["url"]),
            min_nself=str(raw["min_nself"]),
            license_required=bool(raw["license_required"]),
            publisher=str(raw["publisher"]),
            signature=str(raw["signature"]),
            tier=str(raw.get("tier", "free")),
            requires_nself=str(raw.get("requires_nself", "")),
            description=str(raw.get("description", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexError_(f"registry index: an artifact entry lacks {exc}", HINT) from None
    if not NAME.match(artifact.name):
        raise IndexError_(f"registry index: {artifact.name!r} is not a plugin name", HINT)
    for label, value in (("version", artifact.version), ("min_nself", artifact.min_nself)):
        if not semver.Version.is_valid(value):
            raise IndexError_(
                f"registry index: {artifact.name} {label} {value!r} is not a semantic version", HINT
            )
    if not SHA256.match(artifact.sha256) or artifact.size < 0:
        raise IndexError_(f"registry index: {artifact.name} has a bad sha256 or size", HINT)
    return artifact
