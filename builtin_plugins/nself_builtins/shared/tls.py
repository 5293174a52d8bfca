"""Which certificate nginx serves for each host, shared by the nginx and tls capabilities:
file names (relative to the project's ``nginx/`` folder), routed hosts, and a fresh
self-signed certificate."""

from __future__ import annotations

from nself_sdk import Config, Route


def certificate(config: Config) -> tuple[str, str]:
    """The certificate and key nginx serves, relative to the nginx folder: the project's own
    (``SSL_CERTIFICATE_FILE`` and ``SSL_CERTIFICATE_KEY_FILE``, in nginx/ssl/) or the dev one."""
    cert, key = config.text("SSL_CERTIFICATE_FILE"), config.text("SSL_CERTIFICATE_KEY_FILE")
    if not cert:
        return dev_certificate(config.domain)
    return f"ssl/{in_ssl(cert)}", f"ssl/{in_ssl(key)}"


def dev_certificate(domain: str) -> tuple[str, str]:
    """The development certificate's files: named after the domain, so a new BASE_DOMAIN
    gets a new certificate at the next build and the old one is removed."""
    return f"ssl/{domain}.crt", f"ssl/{domain}.key"


def in_ssl(name: str) -> str:
    """A file of nginx/ssl/ as users write it: ``x.crt``, ``ssl/x.crt`` or ``nginx/ssl/x.crt``."""
    for prefix in ("nginx/ssl/", "ssl/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def host_of(route: Route, domain: str) -> str:
    return domain if route.subdomain == "*" else f"{route.subdomain}.{domain}"


def self_signed(domain: str) -> tuple[bytes, bytes]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"*.{domain}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(domain), x509.DNSName(f"*.{domain}"), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def covers(names: list[str], host: str) -> bool:
    """Whether a certificate for ``names`` is valid for ``host`` (one-label wildcards)."""
    for name in names:
        if name == host or (
            name.startswith("*.") and host.endswith(name[1:]) and "." not in host[: -len(name) + 1]
        ):
            return True
    return False


# Certificates from an ACME CA live in the stack's `acme-certs` volume, written by the
# `acme` service (the renewer) and mounted read-only into nginx here.
ACME_MOUNT = "/etc/nginx/certs"
ACME_CERTS_VOLUME = "acme-certs"
ACME_SERVICE = "acme"


def ssl_mode(config: Config) -> str:
    """Where nginx's certificates come from: ``file`` (SSL_CERTIFICATE_FILE), ``acme``
    (SSL_MODE=acme; SSL_MODE=auto outside dev) or ``local`` (the development one)."""
    if config.text("SSL_CERTIFICATE_FILE"):
        return "file"
    mode = config.text("SSL_MODE", "auto").strip().lower()
    if mode == "acme" or (mode == "auto" and not config.is_local):
        return "acme"
    return "local"


def wildcard(config: Config) -> bool:
    """With a DNS hook, one wildcard certificate (DNS-01) covers every host."""
    return bool(config.text("ACME_DNS_HOOK"))


def acme_name(config: Config, host: str) -> str:
    """The certificate (folder under ``live/``) that covers ``host``."""
    return f"_wildcard.{config.domain}" if wildcard(config) else host


def acme_certificates(config: Config, hosts: list[str]) -> dict[str, list[str]]:
    """The certificates the CA is asked for: one per routed host (HTTP-01), or one
    wildcard for the domain and its subdomains (DNS-01)."""
    if wildcard(config):
        return {acme_name(config, config.domain): [config.domain, f"*.{config.domain}"]}
    return {host: [host] for host in sorted(set(hosts))}


def acme_files(config: Config, host: str) -> tuple[str, str]:
    """The certificate and key nginx reads for ``host``, as the container sees them."""
    folder = f"{ACME_MOUNT}/live/{acme_name(config, host)}"
    return f"{folder}/fullchain.pem", f"{folder}/privkey.pem"


def routed_hosts(routes: list[Route], domain: str) -> list[str]:
    return sorted({host_of(route, domain) for route in routes})
