"""Licence keys for pro plugins: offline verification, online refresh, grace window.

A key is ``nself_<tier>_<PAYLOAD>.<SIGNATURE>`` where PAYLOAD is the base64url (no padding)
of canonical JSON::

    {"v": 2, "kid": "99f28ba5cf8466a1", "lid": "lic_...", "tier": "pro",
     "plugins": ["ai"], "tiers": [], "iat": 1764240000, "exp": 1795776000,
     "ttl": 86400, "sub": "Example GmbH"}

and SIGNATURE is the base64url Ed25519 signature of ``b"nself-license-v1\\x00" + PAYLOAD
bytes`` by the licence key ``kid`` embedded in nself (see ``keys``). A licence grants
exactly what it lists: the plugins it names, and every plugin of a tier only when
``tiers`` names that tier (a tier-wide licence, issued as such).

Every use verifies the key offline. Installs and updates also ask the ping_api
(``POST /v1/license/check``), whose answer is signed by a ping key (never a licence key)
and kept, per licence, across ``license clear`` and ``set``. The grace window counts from
the server time inside the last valid signed answer: no answer at all means no grace, so
deleting the state file only loses grace, and a revocation or expiry the server answered
stays in force until the server signs a newer answer. A 4xx answer is a refusal, not an
outage. Past the grace window licensed installs are refused, while builds of plugins
already installed go on with a warning: a running stack is never stopped.
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
FORMAT = 2
PLUGIN_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")  # bundles and Python plugins
# What a signed answer may say about a licence; anything but "valid" refuses installs.
STATUSES = {"valid", "revoked", "expired", "invalid"}
OUTAGE_4XX = {408, 425, 429}  # client errors that mean "try later", not "no"
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
        """Exactly what it lists: a named plugin, or any plugin of a tier it names."""
        return plugin in self.plugins or tier in self.tiers

    @property
    def grants(self) -> str:
        """What it covers, in words."""
        parts = [f"every {t} plugin" for t in self.tiers] + list(self.plugins)
        return ", ".join(parts) or "nothing"

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
    """Mint a licence key (the licensor's side) for ``plugins`` and, only when asked, whole
    ``tiers``."""
    prefix = next((p for p, t in TIERS.items() if t == tier), None)
    if prefix is None:
        raise NselfError(
            f"unknown licence tier {tier!r}", f"use one of: {', '.join(TIERS.values())}"
        )
    _check_grants(plugins, tiers, NselfError)
    payload = keys.canonical(
        {
            "v": FORMAT,
            "kid": keys.key_id(key.public_key()),
            "lid": lid,
            "tier": tier,
            "plugins": sorted(set(plugins)),
            "tiers": sorted(set(tiers)),
            "iat": int(time.time()) if issued is None else issued,
            "exp": expires,
            "ttl": ttl,
            "sub": subject,
        }
    )
    signature = key.sign(keys.DOMAIN_LICENSE + b"\x00" + payload)
    return f"nself_{prefix}_{_b64u(payload)}.{_b64u(signature)}"


def _check_grants(
    plugins: tuple[str, ...], tiers: tuple[str, ...], error: type[NselfError]
) -> None:
    if not plugins and not tiers:
        raise error(
            "a licence must name the plugins it covers, or say it covers a whole tier",
            HINT_NEW,
        )
    for name in plugins:
        if not PLUGIN_NAME.match(name):
            raise error(f"{name!r} is not a plugin name a licence can cover", HINT_NEW)
    for name in tiers:
        if name not in TIERS.values():
            raise error(f"{name!r} is not a licence tier", HINT_NEW)


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
        data = keys.loads(payload)
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
    if data.get("v") != FORMAT:
        raise LicenceError(
            f"licence {lic.lid} has format {data.get('v')!r}, which this nself does not read "
            "(format 1 keys granted whole tiers implicitly)",
            "ask whoever issued it for a new key",
        )
    if TIERS[match.group(1)] != lic.tier:
        raise LicenceError(
            f"the licence key's tier {lic.tier!r} does not match its prefix", HINT_NEW
        )
    _check_grants(lic.plugins, lic.tiers, LicenceError)
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
    return path


def clear_key() -> bool:
    """Forget the stored key. The server's signed answers stay: clearing and setting a key
    again must not reset its grace window or forget a revocation."""
    path = key_path()
    if not path.exists():
        return False
    path.unlink()
    return True


def load_state() -> dict[str, Any]:
    """``{"answers": {lid: signed answer}, "attempts": {lid: {at, error}}, "high_water"}``."""
    try:
        data = json.loads(state_path().read_text())
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    for part in ("answers", "attempts"):
        if not isinstance(data.get(part), dict):
            data[part] = {}
    if isinstance(data.get("answer"), dict) and isinstance(data.get("lid"), str):
        data["answers"].setdefault(data["lid"], data["answer"])  # the state of nself <= 0.x
    for old in ("answer", "lid", "set_at", "last_attempt", "last_error"):
        data.pop(old, None)
    return data


def save_state(state: dict[str, Any]) -> None:
    path = state_path()
    paths.private_dir(path.parent)
    write_atomic(path, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o600)


def last_answer(state: dict[str, Any], lid: str) -> dict[str, Any] | None:
    """The signed part of the newest verified server answer about ``lid``, if any."""
    doc = state.get("answers", {}).get(lid)
    if not doc:
        return None
    try:
        return verify_answer(doc, lid, None)
    except PingFailed:
        return None


def record_answer(state: dict[str, Any], lid: str, doc: dict[str, Any]) -> None:
    """Keep ``doc`` unless a newer answer about ``lid`` is already kept."""
    before = last_answer(state, lid)
    time_now = int(doc["signed"]["time"])
    if before is None or time_now >= int(before["time"]):
        state.setdefault("answers", {})[lid] = doc
    state["high_water"] = max(int(state.get("high_water", 0)), time_now)


def grace_until(state: dict[str, Any], lid: str) -> float | None:
    """When offline use ends: 7 days after the last valid signed answer; None without one."""
    answer = last_answer(state, lid)
    if answer is None or answer["status"] != "valid":
        return None
    return float(answer["time"]) + GRACE


# -- the ping_api ------------------------------------------------------------------------------


class PingFailed(Exception):
    """The licence server gave no usable answer (down, slow, 5xx, unsigned)."""


class PingRefused(Exception):
    """The licence server answered 4xx: it refuses the key (a refusal, not an outage)."""


def ping_url(setting: str | None = None) -> str:
    return (os.environ.get(PING_VAR) or setting or DEFAULT_PING_URL).rstrip("/")


def verify_answer(doc: Any, lid: str, nonce: str | None) -> dict[str, Any]:
    """Check a signed ping_api answer (by a ping key); returns its signed part."""
    if not isinstance(doc, dict) or not isinstance(doc.get("signed"), dict):
        raise PingFailed("the answer is not a signed document")
    signed = doc["signed"]
    kid = str(doc.get("keyid", ""))
    public = keys.trusted("ping").get(kid)
    if public is None:
        role = keys.other_role(kid, "ping")
        raise PingFailed(
            f"the answer is signed by a {role} key, not a ping key"
            if role
            else "the answer is signed by an untrusted key"
        )
    if not keys.verify(public, keys.DOMAIN_PING, keys.canonical(signed), str(doc.get("sig", ""))):
        raise PingFailed("the answer's signature does not verify")
    if signed.get("type") != "nself-ping-answer" or signed.get("lid") != lid:
        raise PingFailed("the answer is about another licence")
    if nonce is not None and signed.get("nonce") != nonce:
        raise PingFailed("the answer is a replay (wrong nonce)")
    stamp = signed.get("time")
    if signed.get("status") not in STATUSES or not isinstance(stamp, int) or stamp < 0:
        raise PingFailed("the answer is malformed")
    return dict(signed)


def sign_answer(key: Ed25519PrivateKey, signed: dict[str, Any]) -> dict[str, Any]:
    """The server's side: sign an answer so a client can keep it as proof."""
    return {
        "signed": signed,
        "keyid": keys.key_id(key.public_key()),
        "sig": keys.sign(key, keys.DOMAIN_PING, keys.canonical(signed)),
    }


def server_status(lic: Licence, revoked: frozenset[str], now: float) -> str:
    """What the licence server answers about a verified key: it checks times itself."""
    if lic.lid in revoked:
        return "revoked"
    if now >= lic.expires:
        return "expired"
    if now < lic.issued - CLOCK_SLACK:
        return "invalid"
    return "valid"


def server_refusal(
    key: str, plugin: str, tier: str, revoked: frozenset[str], now: float
) -> str | None:
    """Why the registry server must not hand ``plugin`` to the holder of ``key`` (None: it
    may): the key verifies, is current, not revoked, and covers the plugin."""
    try:
        lic = parse(key)
    except LicenceError as exc:
        return exc.message
    status = server_status(lic, revoked, now)
    if status != "valid":
        return f"licence {lic.lid} is {status}"
    if not lic.entitles(plugin, tier):
        return f"licence {lic.lid} does not include plugin {plugin}"
    return None


def _reason(response: Any) -> str:
    try:
        reason = str(keys.loads(response.content).get("error", ""))
    except (ValueError, AttributeError):
        reason = ""
    reason = "".join(c for c in reason if c.isprintable())[:200]
    return f"HTTP {response.status_code}" + (f": {reason}" if reason else "")


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
    if 400 <= response.status_code < 500 and response.status_code not in OUTAGE_4XX:
        raise PingRefused(f"{url} answered {_reason(response)}")
    if response.status_code != 200:
        raise PingFailed(f"{url} answered HTTP {response.status_code}")
    try:
        doc = keys.loads(response.content)
    except ValueError:
        raise PingFailed(f"{url} answered something that is not JSON") from None
    verify_answer(doc, lic.lid, nonce)
    return dict(doc)


# -- the decision ------------------------------------------------------------------------------


@dataclass
class Verdict:
    licence: Licence
    warnings: list[str]
    checked: float | None  # server time of the last valid answer


def current() -> Licence | None:
    key = load_key()
    return None if key is None else parse(key)


KEEP_WORKING = "; installed plugins keep working, installs are refused"


class _Decision:
    """Collects what ``check`` finds: a refusal raises for installs, warns for builds."""

    def __init__(self, lic: Licence, purpose: Purpose) -> None:
        self.lic, self.purpose = lic, purpose
        self.warnings: list[str] = []

    def refuse(self, message: str, hint: str) -> None:
        if self.purpose == "install":
            raise LicenceError(message, hint)
        self.warnings.append(message + KEEP_WORKING)


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

    ``install`` is strict: it asks the ping_api and refuses a licence the server refused,
    revoked or called expired, and one it has not confirmed within the grace window (or
    never). ``use`` (a build of an installed plugin) verifies offline, refreshes only
    when due, and turns each of those into a warning so a running stack keeps running.
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
    if plugin and not lic.entitles(plugin, tier):  # "" (licence status) checks no plugin
        raise LicenceError(
            f"licence {lic.lid} ({lic.tier}) does not include plugin {plugin} "
            f"(it covers {lic.grants})",
            "ask for a licence that names it, or remove the plugin",
        )
    decision = _Decision(lic, purpose)
    state = load_state()
    original = json.dumps(state, sort_keys=True)
    answer = last_answer(state, lic.lid)
    high = max(int(state.get("high_water", 0)), int(answer["time"]) if answer else 0)
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

    checked = float(answer["time"]) if answer and answer["status"] == "valid" else None
    attempt = state["attempts"].get(lic.lid, {})
    recently_tried = now - float(attempt.get("at", 0)) < RETRY
    due = answer is None or now - float(answer["time"]) >= lic.ttl
    recent = _confirmed.pop((lic.lid, plugin), 0.0)
    just_confirmed = reuse_recent and recent > time.monotonic() - 60
    outage: str | None = None
    if (purpose == "install" and not just_confirmed) or (due and not recently_tried):
        state["attempts"][lic.lid] = {"at": int(now)}
        try:
            doc = ask(ping, lic, plugin, timeout=timeout)
        except PingRefused as exc:
            state["attempts"][lic.lid]["error"] = str(exc)
            save_state(state)
            decision.refuse(
                f"the licence server refused licence {lic.lid} ({exc})",
                "check the key, or contact whoever issued the licence",
            )
        except PingFailed as exc:
            state["attempts"][lic.lid]["error"] = outage = str(exc)
        else:
            record_answer(state, lic.lid, doc)
            state["attempts"].pop(lic.lid, None)
            answer = last_answer(state, lic.lid)
            checked = float(answer["time"]) if answer and answer["status"] == "valid" else None
    elif attempt.get("error"):
        outage = str(attempt["error"])
    if json.dumps(state, sort_keys=True) != original:
        save_state(state)

    # the latest signed word of the server first: revoked, expired or rejected stays so
    if answer is not None and answer["status"] != "valid":
        when = day(answer["time"])
        message = {
            "revoked": f"licence {lic.lid} was revoked by the licence server ({when})",
            "expired": f"licence {lic.lid} expired on {day(lic.expires)} (the licence server "
            f"said so on {when})",
        }.get(answer["status"], f"licence {lic.lid} was rejected by the licence server ({when})")
        decision.refuse(message, "contact whoever issued the licence")
        return Verdict(lic, decision.warnings, None)
    # expiry by the later of the local clock and the server's signed time
    try:
        check_time(lic, max(now, checked or 0.0))
    except LicenceError as exc:
        decision.refuse(exc.message, exc.hint or "")
    if checked is None and (outage or purpose == "install"):
        decision.refuse(
            f"licence {lic.lid} has never been confirmed by the licence server "
            f"({outage or 'no answer'}): without one signed answer there is no offline grace",
            f"check that {ping} is reachable, then retry",
        )
    elif checked is not None and now - checked > GRACE:
        reason = f" ({outage})" if outage else ""
        decision.refuse(
            f"licence {lic.lid} could not be confirmed by the licence server since "
            f"{day(checked)}; the {GRACE // 86400}-day grace period is over{reason}",
            f"check that {ping} is reachable, then retry",
        )
    elif checked is not None and outage:
        decision.warnings.append(
            f"licence server not reachable ({outage}); using the licence offline until "
            f"{day(checked + GRACE)}"
        )
    return Verdict(lic, decision.warnings, checked)


# (licence id, plugin) -> monotonic time an install check passed online in this process,
# so the registry client's check before the download and the installer's check after it
# ask the licence server once. Each entry is used once.
_confirmed: dict[tuple[str, str], float] = {}


def confirmed_for_install(verdict: Verdict, plugin: str) -> None:
    _confirmed[(verdict.licence.lid, plugin)] = time.monotonic()
