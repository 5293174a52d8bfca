"""Certificates nginx serves: which hosts they cover, when they expire, new dev ones."""

from __future__ import annotations

from typing import Any


def certificate_report(folder: Any, config: Any, stack: Any) -> dict[str, Any]:
    """What nginx serves: file, issuer, names, validity and the routed hosts it misses."""
    import datetime

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from nself_builtins.shared.tls import certificate, covers, host_of
    from nself_sdk import NselfError

    cert_file, _key = certificate(config)
    path = folder / "nginx" / cert_file
    if not path.is_file():
        raise NselfError(f"nginx/{cert_file} does not exist", "run `nself build`")
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise NselfError(f"nginx/{cert_file} is not a PEM certificate: {exc}") from None
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in alt.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    now = datetime.datetime.now(datetime.UTC)
    days = (cert.not_valid_after_utc - now).days
    hosts = sorted({host_of(route, config.domain) for route in stack.routes})
    uncovered = [h for h in hosts if not covers(names, h)]
    problems = []
    if cert.not_valid_after_utc <= now:
        problems.append(f"expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    elif cert.not_valid_before_utc > now:
        problems.append(f"not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    if uncovered:
        problems.append(f"does not cover {', '.join(uncovered)}")
    issuer = cert.issuer.rfc4514_string()
    return {
        "file": f"nginx/{cert_file}",
        "issuer": issuer,
        "self_signed": cert.issuer == cert.subject,
        "names": names,
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": days,
        "hosts": hosts,
        "uncovered": uncovered,
        "problems": problems,
        "renew_soon": 0 <= days < 30,
    }


def issue(domain: str, ssl_folder: Any) -> tuple[bytes, bytes, str]:
    """A development certificate for ``domain`` and its subdomains: from mkcert's local CA
    when mkcert is installed (browsers trust it after `nself ssl install`), else self-signed."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from nself_builtins.shared.tls import self_signed
    from nself_sdk import NselfError

    mkcert = shutil.which("mkcert")
    if mkcert is None:
        cert, key = self_signed(domain)
        return cert, key, "self-signed (install mkcert for a locally trusted one)"
    ssl_folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ssl_folder) as tmp:
        out = Path(tmp)
        names = [domain, f"*.{domain}", "localhost", "127.0.0.1", "::1"]
        done = subprocess.run(
            [mkcert, "-cert-file", str(out / "c.pem"), "-key-file", str(out / "k.pem"), *names],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise NselfError(f"mkcert failed: {' '.join(last)}", "run `nself ssl install` first")
        return (out / "c.pem").read_bytes(), (out / "k.pem").read_bytes(), "mkcert's local CA"
