"""Certificates from an ACME CA (Let's Encrypt by default): the settings, their checks,
and the ``acme`` service that obtains and renews them inside the stack.

The renewer (``renewer.py``, copied into the project as ``acme/renewer.py``) runs in the
certbot image, whose Python carries certbot's own ``acme`` library (contract below; the
test stand-in, ``tests/standins/certbot.Dockerfile``, is Debian's certbot on its terms).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from nself_builtins.shared.tls import (
    ACME_CERTS_VOLUME,
    ACME_SERVICE,
    acme_certificates,
    routed_hosts,
    ssl_mode,
    wildcard,
)
from nself_sdk import (
    Config,
    GeneratedFile,
    HealthCheck,
    ImageContract,
    Mount,
    Problem,
    Service,
    Setting,
    Stack,
)
from nself_sdk.declare import IMAGE_SETTING_LABEL

IMAGE = "certbot/certbot:v5.7.0"
CERTBOT = ImageContract(
    image=IMAGE,
    source=(
        # FROM python:3.x-alpine; no USER (root); apk openssl ca-certificates; certbot and
        # its acme library pip-installed; ENTRYPOINT certbot; EXPOSE 80 443; VOLUMEs.
        "https://github.com/certbot/certbot/blob/v5.7.0/tools/docker/Dockerfile",
        # tags vX.Y.Z are manifests of the amd64, arm32v6 and arm64v8 images
        "https://github.com/certbot/certbot/blob/v5.7.0/tools/docker/deploy_manifests.sh",
        "https://github.com/certbot/certbot/blob/v5.7.0/tools/docker/lib/common",
    ),
    user=0,
    capabilities=(),  # the renewer writes only to the image's volumes (root-owned)
    writable=("/etc/letsencrypt", "/var/lib/letsencrypt"),
    tools=("python3", "sh", "wget", "openssl", "certbot"),
    # Python's own, and what the renewer nself runs in it reads (the DNS hook's are
    # ACME_DNS_ENV_*); certbot itself reads no variables.
    env=("PYTHON*", "ACME_*", "REQUESTS_CA_BUNDLE"),
    ports=(80, 443),
    platforms=("linux/amd64", "linux/arm/v6", "linux/arm64"),
    notes="nself replaces the entrypoint with python3 /nself/renewer.py (acme, josepy, "
    "cryptography and requests are certbot's own dependencies in the image)",
)
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
KEY_TYPES = ("ec256", "ec384", "rsa2048", "rsa3072", "rsa4096")
FOLDER = "acme"  # generated: the renewer, its plan, a CA bundle and DNS hook if set
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

SETTINGS = [
    Setting(
        "SSL_MODE",
        "auto",
        "Where certificates come from: auto (dev: local, else acme), acme or local.",
    ),
    Setting("ACME_DIRECTORY_URL", LETS_ENCRYPT, "The ACME CA's directory (Let's Encrypt)."),
    Setting("ACME_STAGING", "false", "Use the CA's staging directory (untrusted test certs)."),
    Setting(
        "ACME_STAGING_DIRECTORY_URL",
        LETS_ENCRYPT_STAGING,
        "The staging directory (ACME_STAGING, `nself ssl renew --dry-run`).",
    ),
    Setting("ACME_EMAIL", "", "Contact address for the ACME account (optional)."),
    Setting(
        "ACME_CA_BUNDLE",
        "",
        "PEM file of the project: the only CAs trusted for the ACME server (a private CA).",
    ),
    Setting("ACME_KEY_TYPE", "ec256", "Certificate keys: ec256, ec384, rsa2048, rsa3072, rsa4096."),
    Setting("ACME_RENEW_DAYS", "30", "Renew a certificate this many days before it expires."),
    Setting(
        "ACME_DNS_HOOK",
        "",
        "Executable of the project for DNS-01 (one wildcard certificate): HOOK "
        "present|cleanup DOMAIN RECORD VALUE.",
    ),
    Setting("ACME_DNS_PROPAGATION_SECONDS", "60", "Seconds to wait after the DNS hook published."),
    Setting("ACME_DNS_ENV_<NAME>", None, "Variable NAME for the DNS hook (e.g. an API token)."),
    Setting("ACME_IMAGE", IMAGE, "Image of the certificate renewer (needs python3 and acme)."),
]


def directory(config: Config) -> str:
    if config.flag("ACME_STAGING", False):
        return config.text("ACME_STAGING_DIRECTORY_URL", LETS_ENCRYPT_STAGING)
    return config.text("ACME_DIRECTORY_URL", LETS_ENCRYPT)


def _project_file(config: Config, name: str) -> tuple[Path | None, Problem | None]:
    """A file named by setting ``name``, inside the project."""
    value = config.text(name)
    path = (config.project_dir / value).resolve()
    if not path.is_relative_to(config.project_dir.resolve()):
        return None, Problem(
            "error",
            f"{config.where(name)}: {name}={value!r} is outside the project",
            "copy it into the project (it is shipped with each release)",
        )
    if not path.is_file():
        return None, Problem(
            "error", f"{config.where(name)}: {name}: {value} does not exist", "fix the path"
        )
    return path, None


def validate(config: Config) -> list[Problem]:
    problems = []
    mode = config.text("SSL_MODE", "auto").strip().lower()
    if mode not in ("auto", "acme", "local"):
        problems.append(
            Problem(
                "error",
                f"{config.where('SSL_MODE')}: SSL_MODE={mode!r} is not auto, acme or local",
                "auto: certificates from Let's Encrypt outside dev; local: nself's own",
            )
        )
    if mode == "acme" and config.text("SSL_CERTIFICATE_FILE"):
        problems.append(
            Problem(
                "error",
                f"{config.where('SSL_MODE')}: SSL_MODE=acme but SSL_CERTIFICATE_FILE is set",
                "use one: your certificate (SSL_CERTIFICATE_FILE) or ACME (SSL_MODE=acme)",
            )
        )
    if ssl_mode(config) != "acme":
        return problems
    for name in ("ACME_DIRECTORY_URL", "ACME_STAGING_DIRECTORY_URL"):
        url = config.text(name)
        if not re.match(r"^https://[^\s/]+(/\S*)?$", url):
            problems.append(
                Problem(
                    "error",
                    f"{config.where(name)}: {name}={url!r} is not an https:// URL",
                    "the directory URL your CA documents",
                )
            )
    email = config.text("ACME_EMAIL")
    if email and not EMAIL.match(email):
        problems.append(
            Problem("error", f"{config.where('ACME_EMAIL')}: ACME_EMAIL={email!r} is no address")
        )
    if config.text("ACME_KEY_TYPE", "ec256") not in KEY_TYPES:
        problems.append(
            Problem(
                "error",
                f"{config.where('ACME_KEY_TYPE')}: ACME_KEY_TYPE must be one of "
                + ", ".join(KEY_TYPES),
            )
        )
    days = config.int("ACME_RENEW_DAYS", 30)
    if not 1 <= days <= 365:
        problems.append(
            Problem(
                "error",
                f"{config.where('ACME_RENEW_DAYS')}: ACME_RENEW_DAYS must be 1-365",
                "Let's Encrypt recommends renewing a third of the lifetime before: 30 days",
            )
        )
    if not 0 <= config.int("ACME_DNS_PROPAGATION_SECONDS", 60) <= 3600:
        problems.append(
            Problem(
                "error",
                f"{config.where('ACME_DNS_PROPAGATION_SECONDS')}: "
                "ACME_DNS_PROPAGATION_SECONDS must be 0-3600",
            )
        )
    if config.text("ACME_CA_BUNDLE"):
        path, problem = _project_file(config, "ACME_CA_BUNDLE")
        if problem is None and path is not None:
            problem = _bundle_problem(config, path)
        problems += [problem] if problem else []
    if config.text("ACME_DNS_HOOK"):
        _path, problem = _project_file(config, "ACME_DNS_HOOK")
        problems += [problem] if problem else []
    for key in config.prefixed("ACME_DNS_ENV_"):
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            problems.append(
                Problem("error", f"{config.where('ACME_DNS_ENV_' + key)}: bad variable name")
            )
    return problems


def _bundle_problem(config: Config, path: Path) -> Problem | None:
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(path.read_bytes())
    except ValueError:
        return Problem(
            "error",
            f"{config.where('ACME_CA_BUNDLE')}: ACME_CA_BUNDLE: {config.text('ACME_CA_BUNDLE')} "
            "holds no PEM certificate",
            "the CA certificate(s) of your ACME server, PEM encoded",
        )
    return None


def services(config: Config) -> list[Service]:
    if ssl_mode(config) != "acme":
        return []
    environment = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    # The DNS hook's own variables: the renewer hands them over without the prefix.
    for key in config.prefixed("ACME_DNS_ENV_"):
        environment[f"ACME_DNS_ENV_{key}"] = f"${{ACME_DNS_ENV_{key}}}"
    return [
        Service(
            name=ACME_SERVICE,
            title="Certificates (ACME)",
            image=config.text("ACME_IMAGE", IMAGE),
            entrypoint=("python3", "/nself/renewer.py"),
            command=("run",),
            environment=environment,
            healthcheck=HealthCheck(
                ("CMD", "python3", "/nself/renewer.py", "health"),
                interval="5s",
                timeout="10s",
                retries=3,
                start_period="5s",
            ),
            mounts=(
                Mount(f"./{FOLDER}", "/nself", read_only=True),
                Mount("acme-account", "/var/lib/letsencrypt"),
                Mount(ACME_CERTS_VOLUME, "/etc/letsencrypt"),
            ),
            read_only=True,
            tmpfs=("/tmp",),
            stop_grace_period="10s",
            labels={IMAGE_SETTING_LABEL: "ACME_IMAGE"},
            contract=CERTBOT,
        )
    ]


def files(config: Config, stack: Stack) -> list[GeneratedFile]:
    if stack.service(ACME_SERVICE) is None:
        return []
    plan: dict[str, object] = {
        "certificates": acme_certificates(config, routed_hosts(stack.routes, config.domain)),
        "directory": directory(config),
        "dry_run_directory": config.text("ACME_STAGING_DIRECTORY_URL", LETS_ENCRYPT_STAGING),
        "email": config.text("ACME_EMAIL"),
        "key_type": config.text("ACME_KEY_TYPE", "ec256"),
        "renew_days": config.int("ACME_RENEW_DAYS", 30),
    }
    out = [GeneratedFile(f"{FOLDER}/renewer.py", _renewer_source())]
    if config.text("ACME_CA_BUNDLE"):
        bundle = (config.project_dir / config.text("ACME_CA_BUNDLE")).read_bytes()
        out.append(GeneratedFile(f"{FOLDER}/ca-bundle.pem", bundle))
        plan["ca_bundle"] = "/nself/ca-bundle.pem"
    if wildcard(config):
        hook = (config.project_dir / config.text("ACME_DNS_HOOK")).read_bytes()
        out.append(GeneratedFile(f"{FOLDER}/dns-hook", hook, 0o755))
        plan["dns_hook"] = "/nself/dns-hook"
        plan["dns_propagation_seconds"] = config.int("ACME_DNS_PROPAGATION_SECONDS", 60)
    text = json.dumps(plan, indent=2, sort_keys=True) + "\n"
    out.append(GeneratedFile(f"{FOLDER}/certificates.json", text))
    return out


def _renewer_source() -> str:
    return (Path(__file__).parent / "renewer.py").read_text(encoding="utf-8")
