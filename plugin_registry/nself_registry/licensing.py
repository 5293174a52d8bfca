"""Licence keys for pro plugins: offline verification, online refresh, grace window.

A key is ``nself_<tier>_<PAYLOAD>.<SIGNATURE>`` where PAYLOAD is the base64url (no padding)
of canonical JSON::

    {"v": 1, "kid": "99f28ba5cf8466a1", "lid": "lic_...", "tier": "pro",
     "plugins": ["ai"], "tiers": ["pro"], "iat": 1764240000, "exp": 1795776000,
     "ttl": 86400, "sub": "Example GmbH"}

and SIGNATURE is the base64url Ed25519 signature of ``b"nself-license-v1\\x00" + PAYLOAD
bytes`` by the licence key ``kid`` embedded in nself (see ``keys``).

Every use verifies the key offline. Installs and updates also ask the ping_api
(``POST /v1/license/check``), whose answer is signed too; the last good answer is cached.
If the server cannot be reached, the cached answer carries the licence for ``GRACE``; past
that, licensed installs are refused, while builds of plugins already installed go on with
a warning: a running stack is never stopped.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nself_sdk import NselfError, write_atomic

from . import keys, paths

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_VAR = "NSELF_LICENSE_KEY"
PING_VAR = "NSELF_PING_API_URL"
DEFAULT_PING_URL = "https://ping.nself.org"
GRACE = 7 * 86400  # seconds a licence works on its last good server answer
RETRY = 15 * 60  # between background refresh attempts after a failure
CLOCK_SLACK = 10 * 60  # clocks may disagree this much before we call it a rollback
PREFIX = re.compile(r"^nself_([a-z]+)_([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$")
TIERS = {"pro": "pro", "ent": "enterprise"}
HINT_NEW = "check the key you were sent, or ask for a new one"

Purpose = Literal["install", "use"]


class LicenceError(NselfError):
    """The licence does not allow what was asked."""


@dataclass(frozen=True)
class Licence:
    kid: str
    lid: str
    tier: str
    plugins: tuple[str, ...]
    tiers: tuple[str, ...]
    issued: int
    expires: int
    ttl: int
    subject: str = ""
    key: str = field(default="", repr=False)

    def entitles(self, plugin: str, tier: str) -> bool:
        return "*" in self.plugins or plugin in self.plugins or tier in self.tiers

    @property
    def masked(self) -> str:
        return mask(self.key)

    def summary(self) -> dict[str, Any]:
        return {
            "key": self.masked,
            "licence": self.lid,
            "tier": self.tier,
            "subject": self.subject,
            "plugins": list(self.plugins),
            "tiers": list(self.tiers),
            "issued": day(self.issued),
            "expires": day(self.expires),
            "refresh_every": f"{self.ttl // 3600}h",
            "key_id": self.kid,
        }


def mask(key: str) -> str:
    """Enough of a key to recognise it, never enough to use it."""
    head, _, rest = key.partition("_")
    tier, _, body = rest.partition("_")
    if not body:
        return "****"
    return f"{head}_{tier}_{body[:4]}…{key[-4:]}"


def day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64u(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


# -- issuing and parsing ---------------------------------------------------------------------


def issue(
    key: Ed25519PrivateKey,
    lid: str,
    *,
    tier: str = "pro",
    plugins: tuple[str, ...] = (),
    tiers: tuple[str, ...] = (),
    issued: int | None = None,
    expires: int,
    ttl: int = 86400,
    subject: str = "",
) -> str:
    """Mint a licence key (the licensor's side)."""
    prefix = next((p for p, t in TIERS.items() if t == tier), None)
    if prefix is None:
        raise NselfError(
            f"unknown licence tier {tier!r}", f"use one of: {', '.join(TIERS.values())}"
        )
    payload = keys.canonical(
        {
            "v": 1,
            "kid": keys.key_id(key.public_key()),
            "lid": lid,
            "tier": tier,
            "plugins": sorted(plugins),
            "tiers": sorted(tiers or (tier,)),
            "iat": int(time.time()) if issued is None else issued,
            "exp": expires,
            "ttl": ttl,
            "sub": subject,
        }
    )
    signature = key.sign(keys.DOMAIN_LICENSE + b"\x00" + payload)
    return f"nself_{prefix}_{_b64u(payload)}.{_b64u(signature)}"


def parse(key: str) -> Licence:
    """Verify a key's signature offline and read it; times are checked by ``check_time``."""
    key = key.strip()
    match = PREFIX.match(key)
    if not match or match.group(1) not in TIERS:
        raise LicenceError("this is not an nself licence key (expected nself_pro_…)", HINT_NEW)
    try:
        payload = _unb64u(match.group(2))
        signature = _unb64u(match.group(3))
    except ValueError:
        raise LicenceError("the licence key is damaged (bad encoding)", HINT_NEW) from None
    try:
        data = json.loads(payload)
        kid = str(data["kid"])
    except (ValueError, KeyError, TypeError):
        raise LicenceError(
            "the licence key is damaged or altered (its signature does not verify)", HINT_NEW
        ) from None
    trusted = keys.trusted("license")
    public = trusted.get(kid)
    if public is None:
        why = keys.describe_unknown("license", kid)
        raise LicenceError(
            f"the licence key is signed by an unknown key ({why})",
            "upgrade nself, or ask for a key signed with a current key",
        )
    if not keys.verify(public, keys.DOMAIN_LICENSE, payload, keys.b64(signature)):
        raise LicenceError(
            "the licence key is damaged or altered (its signature does not verify)", HINT_NEW
        )
    try:
        lic = Licence(
            kid=kid,
            lid=str(data["lid"]),
            tier=str(data["tier"]),
            plugins=tuple(str(p) for p in data.get("plugins", [])),
            tiers=tuple(str(t) for t in data.get("tiers", [])),
            issued=int(data["iat"]),
            expires=int(data["exp"]),
            ttl=int(data.get("ttl", 86400)),
            subject=str(data.get("sub", "")),
            key=key,
        )
    except (KeyError, TypeError, ValueError):
        raise LicenceError("the licence key lacks required fields", HINT_NEW) from None
    if data.get("v") != 1 or TIERS[match.group(1)] != lic.tier:
        raise LicenceError(
            f"the licence key's tier {lic.tier!r} does not match its prefix", HINT_NEW
        )
    return lic


def check_time(lic: Licence, now: float) -> None:
    if now < lic.issued - CLOCK_SLACK:
        raise LicenceError(
            f"licence {lic.lid} is not valid until {day(lic.issued)}",
            "check the system clock, or wait until then",
        )
    if now >= lic.expires:
        raise LicenceError(
            f"licence {lic.lid} expired on {day(lic.expires)}",
            "renew it, then `nself license set KEY`",
        )


# -- where the key and its state live ----------------------------------------------------------


def key_path() -> Path:
    return paths.home() / "license" / "key"


def state_path() -> Path:
    return paths.home() / "license" / "state.json"


def load_key() -> str | None:
    """The licence key: ``$NSELF_LICENSE_KEY`` wins over the stored key file."""
    if os.environ.get(KEY_VAR, "").strip():
        return os.environ[KEY_VAR].strip()
    path = key_path()
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LicenceError(f"cannot read {path}: {exc.strerror}") from None
    return text or None


def store_key(lic: Licence) -> Path:
    path = key_path()
    paths.private_dir(path.parent)
    write_atomic(path, lic.key + "\n", 0o600)
    state = load_state()
    if state.get("lid") != lic.lid:
        state = {"lid": lic.lid, "set_at": int(time.time())}
    save_state(state)
    return path


def clear_key() -> bool:
    found = False
    for path in (key_path(), state_path()):
        if path.exists():
            path.unlink()
            found = True
    return found


def load_state() -> dict[str, Any]:
    try:
        data = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_state(state: dict[str, Any]) -> None:
    path = state_path()
    paths.private_dir(path.parent)
    write_atomic(path, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o600)


# -- the ping_api ------------------------------------------------------------------------------


class PingFailed(Exception):
    """The licence server gave no usable answer (down, slow, 5xx, unsigned)."""


def ping_url(setting: str | None = None) -> str:
    return (os.environ.get(PING_VAR) or setting or DEFAULT_PING_URL).rstrip("/")


def verify_answer(doc: Any, lid: str, nonce: str | None) -> dict[str, Any]:
    """Check a signed ping_api answer; returns its signed part."""
    if not isinstance(doc, dict) or not isinstance(doc.get("signed"), dict):
        raise PingFailed("the answer is not a signed document")
    signed = doc["signed"]
    public = keys.trusted("license").get(str(doc.get("keyid", "")))
    if public is None or not keys.verify(
        public, keys.DOMAIN_PING, keys.canonical(signed), str(doc.get("sig", ""))
    ):
        raise PingFailed("the answer's signature does not verify")
    if signed.get("type") != "nself-ping-answer" or signed.get("lid") != lid:
        raise PingFailed("the answer is about another licence")
    if nonce is not None and signed.get("nonce") != nonce:
        raise PingFailed("the answer is a replay (wrong nonce)")
    if signed.get("status") not in {"valid", "revoked", "invalid"} or not isinstance(
        signed.get("time"), int
    ):
        raise PingFailed("the answer is malformed")
    return dict(signed)


def sign_answer(key: Ed25519PrivateKey, signed: dict[str, Any]) -> dict[str, Any]:
    """The server's side: sign an answer so a client can keep it as proof."""
    return {
        "signed": signed,
        "keyid": keys.key_id(key.public_key()),
        "sig": keys.sign(key, keys.DOMAIN_PING, keys.canonical(signed)),
    }


def ask(url: str, lic: Licence, plugin: str = "", timeout: float = 5.0) -> dict[str, Any]:
    """Ask the ping_api about ``lic``; returns the verified, signed answer document."""
    import httpx

    nonce = secrets.token_hex(16)
    try:
        response = httpx.post(
            f"{url}/v1/license/check",
            json={"key": lic.key, "nonce": nonce, "plugin": plugin},
            timeout=timeout,
        )
    except httpx.TimeoutException:
        raise PingFailed(f"{url} did not answer within {timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise PingFailed(f"{url} is unreachable ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise PingFailed(f"{url} answered HTTP {response.status_code}")
    try:
        doc = response.json()
    except ValueError:
        raise PingFailed(f"{url} answered something that is not JSON") from None
    verify_answer(doc, lic.lid, nonce)
    return dict(doc)


# -- the decision ------------------------------------------------------------------------------


@dataclass
class Verdict:
    licence: Licence
    warnings: list[str]
    checked: float | None  # server time of the last good answer


def current() -> Licence | None:
    key = load_key()
    return None if key is None else parse(key)


def check(
    plugin: str,
    tier: str,
    purpose: Purpose,
    ping: str,
    now: float | None = None,
    timeout: float = 5.0,
    reuse_recent: bool = True,
) -> Verdict:
    """May ``plugin`` of ``tier`` be installed (``install``) or built (``use``)?

    ``install`` is strict: it asks the ping_api and refuses past the grace window.
    ``use`` (a build of an installed plugin) verifies offline, refreshes only when due,
    and turns every online problem into a warning so a running stack keeps running.
    Raises ``LicenceError`` when refused.
    """
    now = time.time() if now is None else now
    key = load_key()
    if key is None:
        raise LicenceError(
            f"plugin {plugin} needs a {tier} licence and none is set",
            "run `nself license set nself_pro_…`",
        )
    lic = parse(key)
    warnings: list[str] = []
    try:
        check_time(lic, now)
    except LicenceError as exc:
        if purpose == "install":
            raise
        warnings.append(exc.message + "; installed plugins keep working, installs are refused")
    if plugin and not lic.entitles(plugin, tier):  # "" (licence status) checks no plugin
        raise LicenceError(
            f"licence {lic.lid} ({lic.tier}) does not include plugin {plugin}",
            "upgrade the licence, or remove the plugin",
        )
    state = load_state()
    original = dict(state)
    if state.get("lid") != lic.lid:
        state = {"lid": lic.lid, "set_at": int(now)}
    high = max(int(state.get("high_water", 0)), _answer_time(state, lic.lid))
    if now < high - CLOCK_SLACK:
        message = (
            f"the system clock ({day(now)}) is behind a time nself already saw ({day(high)}): "
            "clock rollback"
        )
        if purpose == "install":
            raise LicenceError(message, "fix the system clock (NTP), then retry")
        return Verdict(lic, [message], None)
    if max(now, high) - int(state.get("high_water", 0)) > 60:  # spare a write per build
        state["high_water"] = int(max(now, high))

    checked: float | None = _answer_time(state, lic.lid) or None
    due = checked is None or now - checked >= lic.ttl
    recently_tried = now - float(state.get("last_attempt", 0)) < RETRY
    recent = _confirmed.pop((lic.lid, plugin), 0.0)
    just_confirmed = reuse_recent and recent > time.monotonic() - 60
    if (purpose == "install" and not just_confirmed) or (due and not recently_tried):
        state["last_attempt"] = int(now)
        try:
            doc = ask(ping, lic, plugin, timeout=timeout)
        except PingFailed as exc:
            state["last_error"] = str(exc)
            save_state(state)
            since = checked if checked is not None else float(state.get("set_at", now))
            if now - since > GRACE:
                message = (
                    f"licence {lic.lid} could not be confirmed by the licence server since "
                    f"{day(since)}; the {GRACE // 86400}-day grace period is over ({exc})"
                )
                if purpose == "install":
                    raise LicenceError(
                        message, f"check that {ping} is reachable, then retry"
                    ) from None
                warnings.append(message + "; installed plugins keep working, installs are refused")
            else:
                warnings.append(
                    f"licence server not reachable ({exc}); using the licence offline until "
                    f"{day(since + GRACE)}"
                )
            _raise_if_revoked(state, lic, purpose, warnings)
            return Verdict(lic, warnings, checked)
        state["answer"] = doc
        state.pop("last_error", None)
        checked = float(doc["signed"]["time"])
        state["high_water"] = int(max(state.get("high_water", 0), checked, now))
    else:
        since = checked if checked is not None else float(state.get("set_at", now))
        if now - since > GRACE:  # not retried yet, but already stale
            reason = f" ({state['last_error']})" if state.get("last_error") else ""
            warnings.append(
                f"licence {lic.lid} has not been confirmed by the licence server since "
                f"{day(since)}; the {GRACE // 86400}-day grace period is over{reason}; "
                "installed plugins keep working, installs are refused"
            )
    if state != original:
        save_state(state)
    _raise_if_revoked(state, lic, purpose, warnings)
    return Verdict(lic, warnings, checked)


# (licence id, plugin) -> monotonic time an install check passed online in this process,
# so the registry client's check before the download and the installer's check after it
# ask the licence server once. Each entry is used once.
_confirmed: dict[tuple[str, str], float] = {}


def confirmed_for_install(verdict: Verdict, plugin: str) -> None:
    _confirmed[(verdict.licence.lid, plugin)] = time.monotonic()


def _answer_time(state: dict[str, Any], lid: str) -> int:
    doc = state.get("answer")
    if not doc:
        return 0
    try:
        return int(verify_answer(doc, lid, None)["time"])
    except (PingFailed, NselfError):
        return 0


def _raise_if_revoked(
    state: dict[str, Any], lic: Licence, purpose: Purpose, warnings: list[str]
) -> None:
    doc = state.get("answer")
    if not doc:
        return
    try:
        status = verify_answer(doc, lic.lid, None)["status"]
    except PingFailed:
        return
    if status == "valid":
        return
    verb = "revoked" if status == "revoked" else "rejected"
    message = f"licence {lic.lid} was {verb} by the licence server"
    if purpose == "install":
        raise LicenceError(message, "contact whoever issued the licence")
    warnings.append(message + "; installed plugins keep working, installs are refused")
