"""The certificate renewer: ACME (RFC 8555) inside the stack's ``acme`` service.

This file is copied into the project by ``nself build`` (``acme/renewer.py``) and run by
the service's own Python (the certbot image ships ``acme``, ``josepy``, ``cryptography``
and ``requests``): nself itself is not installed where the stack runs. It uses only the
standard library and those.

    renewer.py run                 the service: placeholders, then renew when due, forever
    renewer.py renew [--force] [--dry-run] [--only NAME]... [--scheduled]
                                   one pass now, by hand or as the service's (JSON out)
    renewer.py revoke NAME         revoke the certificate of NAME (JSON out)
    renewer.py status              every certificate and its renewal state (JSON out)
    renewer.py prepare             placeholders for certificates that do not exist yet
    renewer.py health              exit 0 when every certificate nginx needs exists

Volumes (the certbot image's own): ``/var/lib/letsencrypt`` (private: account keys,
renewal state, lock) and ``/etc/letsencrypt`` (shared with nginx, read-only there):
``live/NAME`` links to ``archive/NAME/STAMP/`` with ``fullchain.pem`` and ``privkey.pem``,
``challenges/`` holds HTTP-01 tokens, and ``generation`` is bumped after each install so
nginx's watcher tests and reloads. The list of certificates is
``/nself/certificates.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE = Path(os.environ.get("ACME_STATE_DIR", "/var/lib/letsencrypt"))
CERTS = Path(os.environ.get("ACME_CERTS_DIR", "/etc/letsencrypt"))
PLAN = Path(os.environ.get("ACME_PLAN", "/nself/certificates.json"))
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
# Failed attempts wait 10 min, 20 min, 40 min, ... up to a day (±20 %), so one broken
# host costs a handful of the CA's failed-validation allowance per day, never a storm.
BACKOFF_BASE = 600.0
BACKOFF_CAP = 86400.0
# Without a Retry-After, a rate-limited account waits this long before asking again.
RATE_LIMIT_WAIT = 3 * 3600.0
NGINX = os.environ.get("ACME_NGINX", "nginx:80")  # the stack's nginx, HTTP
CHECK_EVERY = float(os.environ.get("ACME_CHECK_INTERVAL", "3600"))
METRICS_PORT = int(os.environ.get("ACME_METRICS_PORT", "9110"))


def log(message: str) -> None:
    print(f"acme: {message}", file=sys.stderr, flush=True)


def now() -> float:
    return time.time()


def iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat(timespec="seconds")


# -- files -----------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    sync_dir(path.parent)


def sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(wait: float = 300.0) -> Iterator[None]:
    """One renewer at a time (the service's loop and a renewal by hand)."""
    STATE.mkdir(parents=True, exist_ok=True)
    STATE.chmod(0o700)  # account keys: the renewer's alone
    with open(STATE / "lock", "a+") as handle:
        deadline = now() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if now() > deadline:
                    raise Failure("another renewal is still running") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except ValueError:
        log(f"{path} is damaged; starting it afresh")
        return default


def load_state() -> dict[str, dict[str, Any]]:
    state = load_json(STATE / "state.json", {})
    return state if isinstance(state, dict) else {}


def save_state(state: dict[str, dict[str, Any]]) -> None:
    write_atomic(STATE / "state.json", json.dumps(state, indent=1, sort_keys=True).encode(), 0o600)


def plan() -> dict[str, list[str]]:
    """The certificates the stack needs: name -> DNS names (from ``nself build``)."""
    data = load_json(PLAN, {})
    certificates = data.get("certificates", {}) if isinstance(data, dict) else {}
    return {str(k): [str(n) for n in v] for k, v in sorted(certificates.items())}


def settings() -> dict[str, Any]:
    data = load_json(PLAN, {})
    return data if isinstance(data, dict) else {}


# -- certificates on disk ----------------------------------------------------------------


class Failure(Exception):
    """A renewal that did not work, with the reason people read."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Served:
    """The certificate ``live/NAME`` points to."""

    names: list[str]
    issuer: str
    serial: str
    not_before: float
    not_after: float
    placeholder: bool
    folder: str

    @property
    def expired(self) -> bool:
        return self.not_after <= now()

    @property
    def days_left(self) -> int:
        return int((self.not_after - now()) // 86400)


def live(name: str) -> Path:
    return CERTS / "live" / name


def served(name: str) -> Served | None:
    from cryptography import x509

    folder = live(name)
    try:
        pem = (folder / "fullchain.pem").read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError):
        return None
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in alt.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = []
    return Served(
        names=names,
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        placeholder=(folder / "placeholder").exists(),
        folder=os.path.realpath(folder),
    )


def new_key(kind: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if kind.startswith("rsa"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    else:
        key = ec.generate_private_key(ec.SECP384R1() if kind == "ec384" else ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def checked(name: str, names: list[str], fullchain: bytes, key_pem: bytes) -> None:
    """Refuse to install what nginx must not serve: a chain that does not parse, a key
    that is not the certificate's, a certificate expired or missing a name."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        chain = x509.load_pem_x509_certificates(fullchain)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise Failure(f"{name}: the CA's answer is not a usable certificate: {exc}") from None
    leaf = chain[0]
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise Failure(f"{name}: the certificate does not belong to its key")
    if leaf.not_valid_after_utc.timestamp() <= now():
        raise Failure(f"{name}: the CA sent an expired certificate")
    try:
        alt = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        got = set(alt.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        got = set()
    if not set(names) <= got:
        raise Failure(f"{name}: the certificate lacks {', '.join(sorted(set(names) - got))}")


def install(name: str, fullchain: bytes, key_pem: bytes, placeholder: bool = False) -> None:
    """Put a checked certificate in place: a new archive folder, then ``live/NAME``
    switched to it by an atomic rename of a link. The previous one is kept."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{random.randrange(16**6):06x}"
    folder = CERTS / "archive" / name / stamp
    folder.mkdir(parents=True, mode=0o755)
    write_atomic(folder / "privkey.pem", key_pem, 0o600)
    write_atomic(folder / "fullchain.pem", fullchain, 0o644)
    if placeholder:
        write_atomic(folder / "placeholder", b"self-signed until the CA issues one\n")
    (CERTS / "live").mkdir(parents=True, exist_ok=True, mode=0o755)
    link = live(name)
    tmp = link.with_name(f".{name}.{stamp}")
    os.symlink(f"../archive/{name}/{stamp}", tmp)
    os.replace(tmp, link)
    sync_dir(link.parent)
    prune(name, keep=folder)
    bump()


def prune(name: str, keep: Path) -> None:
    """Archives of ``name`` beyond the newest three (never the one ``live`` points to)."""
    archive = CERTS / "archive" / name
    current = Path(os.path.realpath(live(name)))
    for old in sorted(p for p in archive.iterdir() if p.is_dir())[:-3]:
        if old not in (current, keep):
            shutil.rmtree(old, ignore_errors=True)


def bump() -> None:
    """Tell nginx's watcher that certificates changed (it tests, then reloads)."""
    write_atomic(CERTS / "generation", f"{time.time_ns()}\n".encode())


def make_placeholder(name: str, names: list[str]) -> None:
    """A self-signed certificate so nginx can start (and answer HTTP-01) before the CA
    has issued the real one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key_pem = new_key("ec256")
    key = serialization.load_pem_private_key(key_pem, password=None)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nself placeholder"),
            x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]),
        ]
    )
    start = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - datetime.timedelta(minutes=5))
        .not_valid_after(start + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    install(name, cert.public_bytes(serialization.Encoding.PEM), key_pem, placeholder=True)


def prepare() -> list[str]:
    """Placeholders for the certificates that do not exist yet (or lack a name)."""
    made = []
    (CERTS / "challenges").mkdir(parents=True, exist_ok=True, mode=0o755)
    for name, names in plan().items():
        current = served(name)
        if current is None or (current.placeholder and set(current.names) != set(names)):
            make_placeholder(name, names)
            made.append(name)
    if not (CERTS / "generation").exists():
        bump()
    return made


# -- ACME --------------------------------------------------------------------------------


class Account:
    """An ACME account at one directory: its key and registration live in ``/acme``."""

    def __init__(self, directory_url: str) -> None:
        from acme import client
        from cryptography.hazmat.primitives import serialization
        from josepy.jwa import ES256
        from josepy.jwk import JWKEC

        self.url = directory_url
        self.folder = STATE / "accounts" / hashlib.sha256(directory_url.encode()).hexdigest()[:16]
        key_file = self.folder / "key.pem"
        if not key_file.exists():
            write_atomic(key_file, new_key("ec256"), 0o600)
            write_atomic(self.folder / "directory", directory_url.encode() + b"\n", 0o600)
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        self.jwk = JWKEC(key=key)
        self.net = client.ClientNetwork(self.jwk, alg=ES256, user_agent="nself-renewer")
        self.retry_after: float | None = None
        self.net.session.hooks["response"].append(self._seen)
        try:
            directory = client.ClientV2.get_directory(directory_url, self.net)
        except Exception as exc:  # requests' connection and TLS errors, a bad answer
            raise Failure(
                f"cannot reach the ACME directory {directory_url}: {brief(exc)}"
            ) from None
        self.client = client.ClientV2(directory, self.net)
        self.register()

    def _seen(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """Remember the CA's Retry-After on rate limits and overload (429, 503)."""
        if response.status_code in (429, 503):
            value = response.headers.get("Retry-After", "")
            if value.isascii() and value.isdigit():
                self.retry_after = now() + int(value)
            else:
                from email.utils import parsedate_to_datetime

                with contextlib.suppress(TypeError, ValueError):
                    self.retry_after = parsedate_to_datetime(value).timestamp()

    def register(self) -> None:
        """Register the key, or find the account it has: RFC 8555 answers a known key
        with that account's URL, so a CA that forgot the account makes a new one."""
        from acme import errors, messages

        email = str(settings().get("email") or "")
        new = messages.NewRegistration.from_data(email=email or None, terms_of_service_agreed=True)
        try:
            regr = self.client.new_account(new)
        except errors.ConflictError as exc:  # the key is registered already
            regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            self.net.account = regr
        write_atomic(self.folder / "account.json", regr.json_dumps().encode(), 0o600)


def brief(exc: BaseException) -> str:
    """One line of what went wrong, from an acme, requests or OS error."""
    detail = getattr(exc, "detail", None)
    code = getattr(exc, "code", None)
    text = f"{code}: {detail}" if detail and code else str(detail or exc) or type(exc).__name__
    return re.sub(r"\s+", " ", text).strip()[:400]


def failed_authorizations(exc: Any) -> str:
    """Which hosts failed validation and why, from an ``acme.errors.ValidationError``."""
    parts = []
    for authzr in getattr(exc, "failed_authzrs", []):
        host = authzr.body.identifier.value
        for challb in authzr.body.challenges:
            if challb.error is not None:
                parts.append(f"{host}: {brief(challb.error)}")
    return "; ".join(parts) or "validation failed"


def nginx_serves(name: str, content: bytes, host: str) -> bool:
    """Whether nginx (the stack's, by its service name) answers HTTP-01 for ``host``
    with ``content``: checked before the CA is asked, so a stopped or misconfigured
    nginx never costs one of the CA's failed validations."""
    import urllib.error
    import urllib.request

    url = f"http://{NGINX}/.well-known/acme-challenge/{name}"
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return bool(answer.read() == content)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def wait_for_nginx(seconds: float) -> bool:
    """At start: nginx starts after this service is healthy, so wait until it answers."""
    probe = f"nself-probe-{random.randrange(16**12):012x}"
    path = CERTS / "challenges" / probe
    write_atomic(path, probe.encode(), 0o644)
    try:
        deadline = now() + seconds
        while now() < deadline:
            if nginx_serves(probe, probe.encode(), "localhost"):
                return True
            time.sleep(2)
        return False
    finally:
        path.unlink(missing_ok=True)


def run_hook(action: str, domain: str, record: str, value: str) -> None:
    """``HOOK present|cleanup DOMAIN RECORD VALUE``: the user's DNS provider step."""
    hook = str(settings().get("dns_hook") or "")
    prefix = "ACME_DNS_ENV_"  # ACME_DNS_ENV_TOKEN reaches the hook as TOKEN
    env = dict(os.environ)
    env.update({k[len(prefix) :]: v for k, v in os.environ.items() if k.startswith(prefix)})
    done = subprocess.run(
        [hook, action, domain, record, value],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise Failure(
            f"{domain}: the DNS hook failed to {action} {record}: "
            f"{' '.join(said) or f'exit {done.returncode}'}"
        )


def obtain(account: Account, names: list[str], key_pem: bytes) -> bytes:
    """Order a certificate for ``names`` and answer its challenges: HTTP-01 through
    nginx (files in ``challenges/``), or DNS-01 through the DNS hook."""
    from acme import challenges, crypto_util, errors, messages

    dns = bool(settings().get("dns_hook"))
    csr = crypto_util.make_csr(key_pem, names)
    order = account.client.new_order(csr)
    written: list[Path] = []
    published: list[tuple[str, str, str]] = []
    try:
        answers = []
        for authzr in order.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue  # validated recently: the CA reuses it
            host = authzr.body.identifier.value
            wanted = challenges.DNS01 if dns else challenges.HTTP01
            challb = next((c for c in authzr.body.challenges if isinstance(c.chall, wanted)), None)
            if challb is None:
                raise Failure(f"{host}: the CA offers no {wanted.typ} challenge")
            response, validation = challb.response_and_validation(account.jwk)
            if dns:
                record = challb.chall.validation_domain_name(host)
                run_hook("present", host, record, validation)
                published.append((host, record, validation))
            else:
                token = challb.chall.encode("token")
                path = CERTS / "challenges" / token
                write_atomic(path, validation.encode(), 0o644)
                written.append(path)
                if not nginx_serves(token, validation.encode(), host):
                    raise Failure(
                        f"{host}: nginx does not serve the HTTP-01 challenge at "
                        f"http://{NGINX}/.well-known/acme-challenge/ (CA not asked)"
                    )
            answers.append((challb, response))
        if published:
            time.sleep(float(settings().get("dns_propagation_seconds", 60)))
        for challb, response in answers:
            account.client.answer_challenge(challb, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=180)
        done = account.client.poll_and_finalize(order, deadline)
        return str(done.fullchain_pem).encode()
    except errors.ValidationError as exc:
        raise Failure(failed_authorizations(exc)) from None
    except errors.TimeoutError:
        raise Failure(f"{', '.join(names)}: the CA did not finish validating in time") from None
    finally:
        for path in written:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for host, record, value in published:
            with contextlib.suppress(Failure, OSError, subprocess.SubprocessError):
                run_hook("cleanup", host, record, value)


def directory_url(dry_run: bool) -> str:
    cfg = settings()
    if dry_run:
        return str(cfg.get("dry_run_directory") or cfg.get("directory") or LETS_ENCRYPT)
    return str(cfg.get("directory") or LETS_ENCRYPT)


def issue(account: Account, names: list[str]) -> tuple[bytes, bytes]:
    """A new key, and a certificate for it."""
    key_pem = new_key(str(settings().get("key_type") or "ec256"))
    return obtain(account, names, key_pem), key_pem


# -- renewal -----------------------------------------------------------------------------


def why_due(name: str, names: list[str], current: Served | None, entry: dict[str, Any],
            force: bool) -> str | None:  # fmt: skip
    if current is None:
        return "no certificate yet"
    if current.placeholder:
        return "only a placeholder so far"
    if set(current.names) != set(names):
        return "the names changed"
    if entry.get("revoked") == current.serial:
        return "it was revoked"
    if current.expired:
        return "it has expired"
    renew_days = int(settings().get("renew_days") or 30)
    if current.not_after - now() <= renew_days * 86400:
        return f"it expires in {current.days_left} days"
    if force:
        return "--force"
    return None


def backoff(failures: int) -> float:
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** max(0, failures - 1))
    return delay * random.uniform(0.8, 1.2)


def renew(force: bool = False, dry_run: bool = False, by_hand: bool = False,
          only: list[str] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One pass over every certificate: renew the ones that are due, unless they wait
    out a backoff (a renewal by hand skips the backoff of failed validations, never a
    rate limit the CA set). Failures are recorded, never raised."""
    results = []
    with locked():
        prepare()
        state = load_state()
        account: Account | None = None
        certificates = plan()
        unknown = [
            o for o in only or () if o not in certificates
            and not any(covers(v, o) for v in certificates.values())
        ]  # fmt: skip
        if unknown:
            raise Failure(f"no certificate covers {', '.join(unknown)}")
        for name, names in certificates.items():
            if only and name not in only and not any(covers(names, o) for o in only):
                continue
            entry = state.setdefault(name, {})
            current = served(name)
            reason = why_due(name, names, current, entry, force or dry_run)
            result: dict[str, Any] = {"name": name, "names": names, "reason": reason}
            results.append(result)
            if reason is None:
                result["action"] = "not-due"
                continue
            limited = float(entry.get("rate_limited_until") or 0)
            waiting = float(entry.get("next_attempt") or 0)
            if not dry_run and (limited > now() or (waiting > now() and not by_hand)):
                result["action"] = "waiting"
                result["until"] = iso(max(limited, waiting if not by_hand else 0))
                result["error"] = entry.get("last_error")
                continue
            if not dry_run:
                entry["last_attempt"] = now()
            try:
                if account is None:
                    account = Account(directory_url(dry_run))
                account.retry_after = None
                fullchain, key_pem = issue(account, names)
                checked(name, names, fullchain, key_pem)
            except Exception as exc:  # any failure is recorded, named, and backed off
                message = exc.message if isinstance(exc, Failure) else f"{name}: {brief(exc)}"
                if not any(host in message for host in names):
                    message = f"{', '.join(names)}: {message}"
                result["action"] = "failed"
                result["error"] = message
                if dry_run:
                    continue
                entry["failures"] = int(entry.get("failures") or 0) + 1
                entry["last_error"] = message
                delay = backoff(entry["failures"])
                rate_limited = getattr(exc, "code", "") == "rateLimited" or (
                    account is not None and account.retry_after is not None
                )
                if rate_limited:
                    until = (account.retry_after if account else None) or now() + RATE_LIMIT_WAIT
                    entry["rate_limited_until"] = until
                    delay = max(delay, until - now())
                    result["until"] = iso(until)
                entry["next_attempt"] = now() + delay
                log(f"ERROR: {message}; next try at {iso(entry['next_attempt'])}")
                continue
            finally:
                if not dry_run:
                    save_state(state)
            if dry_run:
                result["action"] = "dry-run-ok"
                continue
            install(name, fullchain, key_pem)
            entry.update(failures=0, last_error=None, next_attempt=None, last_success=now())
            entry.pop("rate_limited_until", None)
            entry.pop("revoked", None)
            save_state(state)
            result["action"] = "renewed"
            log(f"installed a new certificate for {', '.join(names)} ({reason})")
        for result in results:
            current = served(result["name"])
            if current is not None and current.expired:
                log(f"ERROR: nginx serves an EXPIRED certificate for {result['name']}")
    return results


def covers(names: list[str], host: str) -> bool:
    """Whether a certificate for ``names`` is valid for ``host`` (``*.`` one label deep)."""
    parent = host.split(".", 1)[1] if "." in host else ""
    return host in names or (bool(parent) and f"*.{parent}" in names)


def revoke(name: str) -> dict[str, Any]:
    """Revoke the certificate ``name`` (or the one carrying host ``name``) at the CA that
    issued it; the next renewal replaces it (``nself ssl revoke`` runs one at once)."""
    from acme import messages
    from cryptography import x509

    with locked():
        certificates = plan()
        if name not in certificates:  # a host: the certificate that covers it (a wildcard)
            name = next((k for k, v in certificates.items() if covers(v, name)), name)
        names = certificates.get(name)
        current = served(name)
        if names is None or current is None:
            raise Failure(f"no certificate named {name}")
        if current.placeholder:
            raise Failure(f"{name} has only a placeholder: nothing to revoke")
        cert = x509.load_pem_x509_certificate((live(name) / "fullchain.pem").read_bytes())
        account = Account(directory_url(False))
        try:
            account.client.revoke(cert, 0)
        except messages.Error as exc:
            if exc.code != "alreadyRevoked":
                raise Failure(f"{name}: revocation refused: {brief(exc)}") from None
        state = load_state()
        state.setdefault(name, {})["revoked"] = current.serial
        save_state(state)
    log(f"revoked the certificate of {name} (serial {current.serial})")
    return {"name": name, "serial": current.serial, "action": "revoked"}


def status() -> list[dict[str, Any]]:
    state = load_state()
    report = []
    for name, names in plan().items():
        entry = state.get(name, {})
        current = served(name)
        item: dict[str, Any] = {
            "name": name,
            "names": names,
            "issuer": current.issuer if current else None,
            "serial": current.serial if current else None,
            "placeholder": current.placeholder if current else None,
            "not_after": iso(current.not_after) if current else None,
            "days_left": current.days_left if current else None,
            "expired": current.expired if current else None,
            "due": why_due(name, names, current, entry, False),
            "revoked": bool(current and entry.get("revoked") == current.serial),
            "last_attempt": iso(entry.get("last_attempt")),
            "last_success": iso(entry.get("last_success")),
            "last_error": entry.get("last_error"),
            "failures": int(entry.get("failures") or 0),
            "next_attempt": iso(entry.get("next_attempt")),
            "rate_limited_until": iso(entry.get("rate_limited_until")),
        }
        report.append(item)
    return report


# -- the service -------------------------------------------------------------------------


def metrics() -> str:
    lines = []
    series = (
        ("nself_certificate_expiry_timestamp_seconds", "When the served certificate expires."),
        ("nself_certificate_placeholder", "1 while nginx serves a self-signed placeholder."),
        ("nself_certificate_renewal_failures", "Failed renewals since the last success."),
        ("nself_certificate_last_success_timestamp_seconds", "Last certificate installed."),
    )
    rows = status()
    for metric, text in series:
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} gauge"]
        for row in rows:
            value: float
            if metric.endswith("expiry_timestamp_seconds"):
                current = served(row["name"])
                value = current.not_after if current else 0.0
            elif metric.endswith("placeholder"):
                value = 1.0 if row["placeholder"] in (True, None) else 0.0
            elif metric.endswith("failures"):
                value = float(row["failures"])
            else:
                value = float(load_state().get(row["name"], {}).get("last_success") or 0)
            lines.append(f'{metric}{{certificate="{row["name"]}"}} {value}')
    return "\n".join(lines) + "\n"


def serve_metrics() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics().encode() if self.path == "/metrics" else b"not found\n"
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("", METRICS_PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def run() -> None:
    """The service: placeholders at once (nginx waits for them), then a pass every hour
    or so (±10 %), and sooner when ``nself build`` changed the list of certificates."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with locked():
        made = prepare()
    if made:
        log(f"placeholders for {', '.join(made)} until the CA issues them")
    serve_metrics()
    log(f"ready: {len(plan())} certificate(s), directory {directory_url(False)}")
    if not settings().get("dns_hook") and not wait_for_nginx(300):
        log("ERROR: nginx does not serve HTTP-01 challenges after 5 minutes")
    while True:
        seen = PLAN.stat().st_mtime if PLAN.exists() else 0.0
        try:
            renew()
        except Failure as exc:
            log(f"ERROR: {exc.message}")
        deadline = now() + CHECK_EVERY * random.uniform(0.9, 1.1)
        while now() < deadline:
            time.sleep(5)
            if PLAN.exists() and PLAN.stat().st_mtime != seen:
                log("the list of certificates changed")
                break


def health() -> int:
    missing = [name for name in plan() if served(name) is None]
    if missing:
        print(f"no certificate yet for {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="renewer.py")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run")
    sub.add_parser("prepare")
    sub.add_parser("health")
    sub.add_parser("status")
    renew_cmd = sub.add_parser("renew")
    renew_cmd.add_argument("--force", action="store_true")
    renew_cmd.add_argument("--dry-run", action="store_true")
    renew_cmd.add_argument("--only", action="append", default=[])
    renew_cmd.add_argument("--scheduled", action="store_true", help="as the service's own pass")
    revoke_cmd = sub.add_parser("revoke")
    revoke_cmd.add_argument("name")
    args = parser.parse_args(argv)
    bundle = settings().get("ca_bundle")
    if bundle:  # a private CA (a test CA): trusted through this bundle only
        os.environ["REQUESTS_CA_BUNDLE"] = str(bundle)
    try:
        if args.command == "run":
            run()
        elif args.command == "health":
            return health()
        elif args.command == "prepare":
            with locked():
                prepare()
        elif args.command == "status":
            print(json.dumps(status()))
        elif args.command == "renew":
            by_hand = not args.scheduled
            results = renew(args.force, args.dry_run, by_hand=by_hand, only=args.only)
            print(json.dumps(results))
        elif args.command == "revoke":
            print(json.dumps(revoke(args.name)))
    except Failure as exc:
        print(json.dumps({"error": exc.message}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
