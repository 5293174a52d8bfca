"""Ed25519 keys: generation, key ids, trusted keys by role, domain-separated signatures.

Every signature nself checks covers ``DOMAIN + b"\\x00" + payload``, where ``DOMAIN`` names
what is signed (an index, an artifact, a licence, a ping_api answer). A signature made for
one purpose can therefore never be replayed as another.

Each trusted key has one role, and a role signs only its own kind of document:

    registry   the registry index (and artifacts: a registry key may publish)
    publisher  artifacts only, never an index
    license    licence keys only (held offline by the licensor)
    ping       the licence server's answers only (held by the running ping_api, so a
               stolen server key can answer, never mint a licence)

Trusted public keys are embedded here, keyed by key id (the first 16 hex digits of the
SHA-256 of the raw public key). Rotation: add the new key, sign with it, and keep the old
one listed until everything signed with it has expired; then move it to ``RETIRED``.

Test-only override: ``NSELF_TEST_TRUSTED_KEYS`` may name a JSON file
``{"registry": {KEY_ID: BASE64}, "publisher": {...}, "license": {...}, "ping": {...}}``
(a missing role trusts no key) that REPLACES the embedded keys. It exists so the test suite
can sign with throw-away keys; nself warns whenever it is in effect, and it must never be
set in production (anyone who can set it can mint licences for themselves).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nself_sdk import NselfError, UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

Purpose = Literal["registry", "publisher", "license", "ping"]
ROLES: tuple[Purpose, ...] = ("registry", "publisher", "license", "ping")

# Production keys. The private halves never leave the release managers' offline storage
# (the ping key's lives in the public ping_api's secrets). nself's own artifacts are signed
# by its registry key, so no publisher key is embedded.
EMBEDDED: dict[Purpose, dict[str, str]] = {
    "registry": {"3b3ce265aa1d0c2c": "1y2DD09m8yxTe3gwPLTdMTOGtkrnQ6l6X+ZWfwOd34U="},
    "publisher": {},
    "license": {"99f28ba5cf8466a1": "cINNaadTFKiHss76lxtK9hkUoPFqAnLVXzzKKeMTPgo="},
    "ping": {"8fd273cb3d4bd48c": "VentdUQu5oicmJLYSm2BUo296WnmPnJx0hwCIyZDHdA="},
}
# Key ids that once signed things and must now be refused with a precise message.
RETIRED: dict[Purpose, set[str]] = {role: set() for role in ROLES}

TEST_KEYS_VAR = "NSELF_TEST_TRUSTED_KEYS"
# Extra keys for private registries ("KEYID:BASE64,..."): registry keys sign the index,
# publisher keys only artifacts. Licence and ping keys can never be added this way.
REGISTRY_KEYS_VAR = "NSELF_REGISTRY_KEYS"
PUBLISHER_KEYS_VAR = "NSELF_PUBLISHER_KEYS"
EXTRA_VARS: dict[Purpose, str] = {"registry": REGISTRY_KEYS_VAR, "publisher": PUBLISHER_KEYS_VAR}

DOMAIN_INDEX = b"nself-registry-index-v1"
DOMAIN_ARTIFACT = b"nself-plugin-artifact-v1"
DOMAIN_LICENSE = b"nself-license-v1"
DOMAIN_PING = b"nself-ping-answer-v1"

_warned = False


def canonical(data: Any) -> bytes:
    """The one byte form of a JSON value that is signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: str | bytes) -> Any:
    """Parse JSON that may come from an attacker: nesting too deep for the parser is bad
    JSON (``ValueError``) like any other, not an unexpected error."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None


def raw_public(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey | bytes) -> str:
    raw = public if isinstance(public, bytes) else raw_public(public)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate() -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private(path: Path) -> Ed25519PrivateKey:
    """Read a PEM (PKCS#8) Ed25519 private key written by ``nself registry keygen``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NselfError(
            f"cannot read signing key {path}: {exc.strerror}",
            "create one with `nself registry keygen`",
        ) from None
    return private_from_pem(data, str(path))


def private_from_pem(data: bytes, where: str) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise NselfError(
            f"{where} is not a PEM private key", "create one with `nself registry keygen`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise NselfError(
            f"{where} is not an Ed25519 key", "create one with `nself registry keygen`"
        )
    return key


def public_from_b64(text: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    raw = unb64(text)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, domain: bytes, payload: bytes) -> str:
    return b64(key.sign(domain + b"\x00" + payload))


def verify(public: Ed25519PublicKey, domain: bytes, payload: bytes, signature: str) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public.verify(unb64(signature), domain + b"\x00" + payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def _parse_pairs(text: str, source: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        kid, sep, pub = item.partition(":")
        if not sep:
            raise NselfError(
                f"{source}: {item!r} is not KEYID:BASE64", "see docs/plugins/registry.md"
            )
        found[kid.strip()] = pub.strip()
    return found


def _test_override(purpose: Purpose) -> dict[str, str] | None:
    global _warned
    path = os.environ.get(TEST_KEYS_VAR)
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text())
        keys = {str(k): str(v) for k, v in dict(data.get(purpose, {})).items()}
    except (OSError, ValueError, AttributeError, TypeError):
        raise NselfError(f"{TEST_KEYS_VAR}={path} is not a readable key file") from None
    if not _warned:
        _warned = True
        print(
            f"warning: {TEST_KEYS_VAR} is set: trusting test keys instead of nself's own",
            file=sys.stderr,
        )
    return keys


def trusted(purpose: Purpose, extra: str = "") -> dict[str, Ed25519PublicKey]:
    """Public keys trusted for ``purpose``, by key id.

    ``extra`` ("KEYID:BASE64,...", a project setting) adds private-registry keys of that
    role, as its environment variable does; licence and ping keys are only the embedded ones.
    """
    source = _test_override(purpose)
    pairs = dict(EMBEDDED[purpose] if source is None else source)
    var = EXTRA_VARS.get(purpose)
    if var is not None:
        pairs.update(_parse_pairs(extra, var))
        pairs.update(_parse_pairs(os.environ.get(var, ""), var))
    keys: dict[str, Ed25519PublicKey] = {}
    for kid, pub in pairs.items():
        if kid in RETIRED[purpose]:
            continue
        try:
            key = public_from_b64(pub)
        except ValueError:
            raise NselfError(f"trusted key {kid} is not a base64 Ed25519 public key") from None
        if key_id(key) != kid:
            raise NselfError(f"trusted key {kid} does not match its key id ({key_id(key)})")
        keys[kid] = key
    return keys


def describe_unknown(purpose: Purpose, kid: str) -> str:
    if kid in RETIRED[purpose]:
        return f"key id {kid} has been retired"
    return f"key id {kid} is not trusted by this nself"


def other_role(kid: str, purpose: Purpose, extra: dict[Purpose, str] | None = None) -> str:
    """The role ``kid`` is trusted for instead of ``purpose`` ("" when none): a publisher
    key that signed an index, a licence key that signed a ping answer."""
    for role in ROLES:
        if role != purpose and kid in trusted(role, (extra or {}).get(role, "")):
            return role
    return ""


SIGNS: dict[Purpose, str] = {
    "registry": "a registry index",
    "publisher": "an artifact",
    "license": "a licence key",
    "ping": "a licence server's answer",
}


def refuse_other_role(key: Ed25519PrivateKey, purpose: Purpose, where: str) -> None:
    """Refuse to sign ``purpose``'s documents with a key this nself trusts in another role
    only (a publisher key signing an index, a registry key minting licences): clients would
    refuse what it signs, and the key would be held where it does not belong. A registry
    key may sign artifacts too."""
    kid = key_id(key.public_key())
    allowed: set[Purpose] = {purpose, "registry"} if purpose == "publisher" else {purpose}
    if any(kid in trusted(role) for role in allowed):
        return
    other = other_role(kid, purpose)
    if other:
        raise UsageError(
            f"{where} is key {kid}, which this nself trusts as a {other} key: "
            f"it cannot sign {SIGNS[purpose]}",
            f"sign with a {purpose} key (`nself registry keygen FILE --role {purpose}`)",
        )
