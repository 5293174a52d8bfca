"""The signed registry index: what a registry offers, and proof that it said so.

On disk and on the wire an index is one JSON document::

    {"signed": {"type": "nself-registry-index", "format": 2, "role": "registry",
                "name": "...", "version": 7, "issued": "2026-11-27T13:00:00Z",
                "expires": "2026-12-27T13:00:00Z", "artifacts": [ ... ],
                "withdrawn": [{"name": ..., "version": ..., "sha256": ...}]},
     "signatures": [{"keyid": "3b3ce265aa1d0c2c", "sig": "BASE64"}]}

Each signature covers ``b"nself-registry-index-v1\\x00" + canonical(signed)`` (sorted keys,
no spaces, UTF-8) and counts only when its key is trusted in the registry role: the payload
names that role, and a publisher key (which signs artifacts) can never sign an index.
``version`` only goes up; clients refuse an index older than the last one they accepted,
any index past ``expires``, and one valid for longer than ``MAX_VALIDITY``. ``withdrawn``
remembers released versions no longer offered, so that nobody, the publishing tool
included, can release other bytes under their name and version.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nself_sdk import NselfError

from . import keys

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TYPE = "nself-registry-index"
FORMAT = 2
INDEX_ROLE = "registry"  # the only role whose signature makes an index
ARTIFACT_ROLE = "publisher"  # what an artifact signature vouches as (registry keys may too)
MAX_VALIDITY = timedelta(days=90)  # an index can never be valid for longer than this
NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
HINT = "the registry or the network served something nself cannot trust; tell its operator"


class IndexError_(NselfError):
    """The index cannot be trusted or used."""


def release(name: str, version: str) -> str:
    """``name@version`` of one release: SemVer's build metadata (``+...``) does not make
    another version (it has the same precedence), so ``1.0.0+rebuilt`` is ``1.0.0``."""
    return f"{name}@{version.split('+', 1)[0]}"


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
        """What the publisher signs: identity and content of the archive, and the role."""
        return keys.canonical(
            {
                "name": self.name,
                "version": self.version,
                "sha256": self.sha256,
                "size": self.size,
                "role": ARTIFACT_ROLE,
            }
        )

    @property
    def spec(self) -> str:
        return release(self.name, self.version)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Released:
    """A version once released and no longer offered: its bytes stay what they were."""

    name: str
    version: str
    sha256: str

    @property
    def spec(self) -> str:
        return release(self.name, self.version)


@dataclass(frozen=True)
class Index:
    name: str
    version: int
    issued: datetime
    expires: datetime
    artifacts: tuple[Artifact, ...]
    signed_by: tuple[str, ...] = ()  # every trusted registry key whose signature verified
    withdrawn: tuple[Released, ...] = ()

    def released(self) -> dict[str, str]:
        """``name@version`` -> sha256 of every version this index says was released."""
        found = {w.spec: w.sha256 for w in self.withdrawn}
        found.update({a.spec: a.sha256 for a in self.artifacts})
        return found

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
    key: Ed25519PrivateKey | Sequence[Ed25519PrivateKey],
    name: str,
    version: int,
    artifacts: list[Artifact],
    valid_for: timedelta,
    issued: datetime | None = None,
    withdrawn: Sequence[Released] = (),
) -> dict[str, Any]:
    """The signed JSON document for these artifacts, signed by each registry key given
    (two during a key rotation: clients that know either accept it)."""
    if valid_for > MAX_VALIDITY or valid_for <= timedelta(0):
        raise NselfError(
            f"an index may be valid for 1 to {MAX_VALIDITY.days} days, not {valid_for}",
            "publish a fresh index more often instead",
        )
    issued = issued or now()
    signed = {
        "type": TYPE,
        "format": FORMAT,
        "role": INDEX_ROLE,
        "name": name,
        "version": version,
        "issued": stamp(issued),
        "expires": stamp(issued + valid_for),
        "artifacts": [a.as_json() for a in sorted(artifacts, key=lambda a: (a.name, a.version))],
        "withdrawn": [asdict(w) for w in sorted(set(withdrawn), key=lambda w: (w.name, w.version))],
    }
    payload = keys.canonical(signed)
    signers = [key] if not isinstance(key, Sequence) else list(key)
    signatures = [
        {"keyid": keys.key_id(k.public_key()), "sig": keys.sign(k, keys.DOMAIN_INDEX, payload)}
        for k in signers
    ]
    return {"signed": signed, "signatures": signatures}


def sign_artifact(key: Ed25519PrivateKey, artifact: Artifact) -> Artifact:
    from dataclasses import replace

    kid = keys.key_id(key.public_key())
    unsigned = replace(artifact, publisher=kid, signature="")
    return replace(unsigned, signature=keys.sign(key, keys.DOMAIN_ARTIFACT, unsigned.payload()))


def verify_document(doc: Any, extra_keys: str = "", publisher_keys: str = "") -> Index:
    """Check the signature and shape of an index document (not its freshness).

    Only keys trusted in the registry role count; ``publisher_keys`` only serve to say
    precisely why a publisher's signature on an index is refused.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("signed"), dict):
        raise IndexError_("registry index is malformed (no signed part)", HINT)
    signatures = doc.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise IndexError_("registry index is not signed", HINT)
    signed = doc["signed"]
    trusted = keys.trusted("registry", extra_keys)
    payload = keys.canonical(signed)
    unknown: list[str] = []
    signed_by: list[str] = []
    for entry in signatures:
        if not isinstance(entry, dict):
            continue
        kid, sig = str(entry.get("keyid", "")), str(entry.get("sig", ""))
        key = trusted.get(kid)
        if key is None:
            unknown.append(kid)
        elif kid not in signed_by and keys.verify(key, keys.DOMAIN_INDEX, payload, sig):
            signed_by.append(kid)
    if not signed_by:
        if unknown and len(unknown) == len(signatures):
            roles: dict[keys.Purpose, str] = {"registry": extra_keys, "publisher": publisher_keys}
            role = keys.other_role(unknown[0], "registry", roles)
            if role:
                raise IndexError_(
                    f"registry index is signed by key id {unknown[0]}, which this nself "
                    f"trusts as a {role} key: only a registry key can sign an index",
                    "a publisher key signs artifacts only; tell the registry operator",
                )
            why = keys.describe_unknown("registry", unknown[0])
            raise IndexError_(
                f"registry index is signed by an untrusted key: {why}",
                "for a private registry, add its key to NSELF_REGISTRY_KEYS",
            )
        raise IndexError_("registry index signature does not verify (tampered index?)", HINT)
    return _parse(signed, tuple(signed_by))


def _parse(signed: dict[str, Any], signed_by: tuple[str, ...]) -> Index:
    if signed.get("type") != TYPE or signed.get("format") != FORMAT:
        raise IndexError_(
            f"registry index has type {signed.get('type')!r} format {signed.get('format')!r}",
            "upgrade nself to read this registry",
        )
    if signed.get("role") != INDEX_ROLE:
        raise IndexError_(
            f"registry index names the role {signed.get('role')!r}, not {INDEX_ROLE!r}", HINT
        )
    version = signed.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise IndexError_("registry index: version must be a positive whole number", HINT)
    items = signed.get("artifacts")
    if not isinstance(items, list):
        raise IndexError_("registry index: artifacts must be a list", HINT)
    artifacts = [_artifact(raw) for raw in items]
    withdrawn = signed.get("withdrawn", [])
    if not isinstance(withdrawn, list):
        raise IndexError_("registry index: withdrawn must be a list", HINT)
    found = Index(
        name=str(signed.get("name", "")),
        version=version,
        issued=parse_stamp(signed.get("issued"), "issued"),
        expires=parse_stamp(signed.get("expires"), "expires"),
        artifacts=tuple(artifacts),
        signed_by=signed_by,
        withdrawn=tuple(_released(raw) for raw in withdrawn),
    )
    if found.expires - found.issued > MAX_VALIDITY:
        raise IndexError_(
            f"registry index (version {version}) claims to be valid until "
            f"{stamp(found.expires)}, more than {MAX_VALIDITY.days} days after it was issued",
            "an index must be re-published at least every 90 days; tell the registry operator",
        )
    specs = [a.spec for a in artifacts] + [w.spec for w in found.withdrawn]
    if len(specs) != len(set(specs)):
        raise IndexError_("registry index lists a plugin version twice", HINT)
    return found


def verify_publisher(artifact: Artifact, extra_keys: str = "", publisher_keys: str = "") -> None:
    """Check the publisher's own signature of one artifact (done before it is downloaded).

    The index signature already vouches for every entry; this adds the publisher's word,
    and is only checked for the artifact about to be used (an index may list thousands).
    A publisher key or a registry key may sign an artifact; a licence or ping key never.
    """
    signers = keys.trusted("publisher", publisher_keys) | keys.trusted("registry", extra_keys)
    key = signers.get(artifact.publisher)
    if key is None:
        why = keys.describe_unknown("publisher", artifact.publisher)
        raise IndexError_(
            f"{artifact.name} {artifact.version} is published by an untrusted key ({why})",
            "trust the publisher's key with NSELF_PUBLISHER_KEYS",
        )
    if not keys.verify(key, keys.DOMAIN_ARTIFACT, artifact.payload(), artifact.signature):
        raise IndexError_(
            f"the publisher signature of {artifact.name} {artifact.version} does not verify",
            HINT,
        )


def _released(raw: Any) -> Released:
    if not isinstance(raw, dict):
        raise IndexError_("registry index: a withdrawn entry is not an object", HINT)
    found = Released(str(raw.get("name", "")), str(raw.get("version", "")), str(raw.get("sha256")))
    if not NAME.match(found.name) or not SHA256.match(found.sha256):
        raise IndexError_(f"registry index: withdrawn entry {found.spec!r} is malformed", HINT)
    return found


TIER = re.compile(r"^[a-z]{1,16}$")


def printable(text: str) -> str:
    """``text`` on one line without control characters (an escape sequence in a
    description would move the cursor or rewrite what the terminal shows)."""
    return "".join(ch if ch.isprintable() else " " for ch in text)


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
            # shown by `nself plugin search`: no escape sequence reaches the terminal
            description=printable(str(raw.get("description", ""))),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IndexError_(f"registry index: an artifact entry lacks {exc}", HINT) from None
    if not NAME.match(artifact.name):
        raise IndexError_(f"registry index: {artifact.name!r} is not a plugin name", HINT)
    if not TIER.match(artifact.tier):
        raise IndexError_(
            f"registry index: {artifact.name} tier {artifact.tier!r} is not a tier", HINT
        )
    for label, value in (("version", artifact.version), ("min_nself", artifact.min_nself)):
        if not semver.Version.is_valid(value):
            raise IndexError_(
                f"registry index: {artifact.name} {label} {value!r} is not a semantic version", HINT
            )
    if not SHA256.match(artifact.sha256) or artifact.size < 0:
        raise IndexError_(f"registry index: {artifact.name} has a bad sha256 or size", HINT)
    return artifact
