"""Hasura GraphQL Engine at api.{domain}: admin and JWT secrets, console off outside dev;
with HASURA_REPLICA_ENABLED, a second, read-only Hasura on the database replica
(``replica``: what Hasura CE does and does not do with read replicas)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from nself_builtins.shared.urls import public_url
from nself_sdk import (
    Config,
    Finding,
    HealthCheck,
    ImageContract,
    Problem,
    Route,
    Service,
    ServicePlugin,
    Setting,
    Stack,
    Subdomain,
    hookimpl,
)

if TYPE_CHECKING:
    from typer import Typer

IMAGE = "hasura/graphql-engine:v2.44.0"
HASURA = ImageContract(
    image=IMAGE,
    source=(
        "https://github.com/hasura/graphql-engine/blob/v2.44.0/packaging/graphql-engine/Dockerfile",
        "https://github.com/hasura/graphql-engine/blob/v2.44.0/packaging/graphql-engine-base/ubuntu.dockerfile",
        "https://hasura.io/docs/2.0/deployment/graphql-engine-flags/reference/",
        "https://hasura.io/docs/2.0/api-reference/syntax-defs/#pgsourceconnectioninfo",
    ),
    # ubuntu (jammy) base; a hasura user (1001) exists but the image has no USER.
    user=0,
    capabilities=(),
    writable=(),
    # "curl is not removed, it's required to support health checks"; the image's own
    # HEALTHCHECK is `curl -f http://localhost:8080/healthz`.
    tools=("graphql-engine", "curl", "sh", "bash", "pg_dump"),
    # A source's connection URL in the metadata may name any variable (``database_url:
    # {from_env: NAME}``, read from Hasura's environment): the plugins' sources read
    # HASURA_PLUGIN_<NAME>_DATABASE_URL (docs/plugins/security.md).
    env=("HASURA_GRAPHQL_*", "HASURA_PLUGIN_*"),
    required=("HASURA_GRAPHQL_DATABASE_URL",),
    ports=(8080,),
    # The base Dockerfile builds per TARGETPLATFORM (amd64 and arm64).
    platforms=("linux/amd64", "linux/arm64"),
)
JWT_DEFAULT = '{"type":"HS256","key":"${HASURA_JWT_KEY}"}'
REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
# An origin pattern that matches every site: "*", "https://*", "http://*:*", ...
ANY_ORIGIN = re.compile(r"^([a-z]+://)?\*(:[0-9*]+)?/?$")


SETTINGS = (
    Setting(
        "HASURA_GRAPHQL_ADMIN_SECRET",
        description="Admin secret for the Hasura API.",
        secret=True,
        min_length=32,
        generate="token",
        rotation="Scripts, CI jobs and backends that call Hasura with the admin secret "
        "stop working until they are given the new one.",
    ),
    Setting(
        "HASURA_JWT_KEY",
        description="HS256 signing key shared by Hasura and Auth.",
        secret=True,
        min_length=32,
        generate="token",
        rotation="Every token signed with the old key becomes invalid at once: all "
        "signed-in users are signed out and must sign in again, and services holding "
        "issued tokens get 'invalid JWT' errors until they fetch new ones.",
    ),
    Setting(
        "HASURA_GRAPHQL_JWT_SECRET",
        JWT_DEFAULT,
        "JWT configuration (JSON) Hasura and Auth verify tokens with.",
        secret=True,
        min_length=32,
    ),
    Setting("HASURA_GRAPHQL_ENABLE_CONSOLE", None, "Serve the console (dev only)."),
    Setting("HASURA_GRAPHQL_DEV_MODE", None, "Verbose errors (dev only)."),
    Setting("HASURA_GRAPHQL_CORS_DOMAIN", None, "Allowed origins, comma-separated."),
    Setting(
        "HASURA_REPLICA_ENABLED",
        "false",
        "Run a second, read-only Hasura on the database replica, at its own subdomain "
        "(`nself hasura replica enable`; queries sent there read the replica).",
    ),
    Setting(
        "HASURA_REPLICA_SUBDOMAIN",
        "api-read",
        "Public subdomain of the read-only Hasura on the replica.",
    ),
)


def _default_origins(config: Config) -> list[str]:
    # Browsers send the port in the origin when it is not 443.
    origins = [public_url(config, "*"), public_url(config)]
    if config.is_local:
        origins.append("http://localhost:*")
    return origins


def _cors(config: Config) -> str:
    raw = config.get("HASURA_GRAPHQL_CORS_DOMAIN")
    if raw is None:
        return ",".join(_default_origins(config))
    # Hasura rejects spaces in the list.
    return ",".join(part.strip() for part in raw.split(",") if part.strip())


def _env(config: Config) -> dict[str, str]:
    dev = config.is_local
    console = config.flag("HASURA_GRAPHQL_ENABLE_CONSOLE", dev) and dev
    dev_mode = config.flag("HASURA_GRAPHQL_DEV_MODE", dev) and dev
    from .replica import env as replica_env

    return replica_env(config) | {
        "HASURA_GRAPHQL_CORS_DOMAIN_EFFECTIVE": _cors(config),
        "HASURA_GRAPHQL_CONSOLE_EFFECTIVE": str(console).lower(),
        "HASURA_GRAPHQL_DEV_MODE_EFFECTIVE": str(dev_mode).lower(),
        "HASURA_GRAPHQL_URL": "http://hasura:8080/v1/graphql",
    }


def _cors_problems(config: Config) -> list[Problem]:
    """CORS open to every origin: refused in staging and prod, a warning in dev."""
    raw = config.get("HASURA_GRAPHQL_CORS_DOMAIN")
    if raw is None or not any(ANY_ORIGIN.match(o.strip()) for o in raw.split(",")):
        return []
    default = ",".join(_default_origins(config))
    return [
        Problem(
            "warning" if config.is_local else "error",
            f"{config.where('HASURA_GRAPHQL_CORS_DOMAIN')}: HASURA_GRAPHQL_CORS_DOMAIN={raw!r} "
            "lets every website call the GraphQL API from a browser"
            + ("" if config.is_local else f" ({config.env} allows only listed origins)"),
            f"list the origins of the project's sites (e.g. {default}), or delete the line "
            "for that default",
        )
    ]


def _short_key(config: Config, key: str) -> Problem:
    """The error for an HS key under 32 characters, naming the setting and line it comes
    from: HASURA_JWT_KEY when the JSON refers to it (the default), else the JSON itself."""
    name = "HASURA_GRAPHQL_JWT_SECRET"
    entry = config.resolver.entry(name)
    refs = REF.findall(entry.raw) if entry is not None and not entry.literal else []
    source = next((ref for ref in refs if config.get(ref) == key), None)
    generate = "nself secrets generate" + ("" if config.is_local else f" --env {config.env}")
    if source is not None:
        return Problem(
            "error",
            f"{config.where(source)}: {source} is shorter than 32 characters "
            f"(it is the HS256 key in {name})",
            f"Hasura refuses shorter keys: set {source} to at least 32 characters, or "
            f"delete that line and run `{generate}`",
        )
    return Problem(
        "error",
        f"{config.where(name)}: the HS256 key in {name} is shorter than 32 characters",
        'Hasura refuses shorter keys: put a key of at least 32 characters in "key", or '
        f"delete the line to use {JWT_DEFAULT} and run `{generate}`",
    )


# The key types Hasura verifies tokens with (HASURA_GRAPHQL_JWT_SECRET "type").
JWT_TYPES = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "Ed25519",
    "ES256",
    "ES384",
    "ES512",
)


def _jwt_problem(config: Config, jwt: object) -> Problem | None:
    """HASURA_GRAPHQL_JWT_SECRET is either {"jwk_url": URL} (keys fetched from a JWKS, as with
    Auth0 or Firebase) or {"type": one of JWT_TYPES, "key": ...}: an HS key of at least 32
    characters, a PEM public key or certificate for the others."""
    where = config.where("HASURA_GRAPHQL_JWT_SECRET")
    name = "HASURA_GRAPHQL_JWT_SECRET"
    if not isinstance(jwt, dict):
        return Problem("error", f"{where}: {name} is not a JSON object", f"use {JWT_DEFAULT}")
    if "jwk_url" in jwt and "key" not in jwt:
        url = jwt["jwk_url"]
        if isinstance(url, str) and re.match(r"^https?://[^\s/]+", url):
            return None
        return Problem(
            "error",
            f'{where}: the "jwk_url" in {name} is not an http(s) URL: {url!r}',
            'use {"jwk_url":"https://<issuer>/.well-known/jwks.json"}',
        )
    if "type" not in jwt:
        return Problem(
            "error",
            f'{where}: {name} needs a "type" and a "key" (or a "jwk_url")',
            f'use {JWT_DEFAULT}, or {{"jwk_url":"https://..."}} for keys fetched from a JWKS',
        )
    kind, key = str(jwt["type"]), str(jwt.get("key", ""))
    if kind not in JWT_TYPES:
        return Problem(
            "error",
            f'{where}: the "type" {kind!r} in {name} is not one Hasura knows',
            "use one of " + ", ".join(JWT_TYPES),
        )
    if kind.startswith("HS"):
        return _short_key(config, key) if len(key) < 32 else None
    if "-----BEGIN " not in key:
        return Problem(
            "error",
            f'{where}: the {kind} "key" in {name} is not a PEM public key or certificate',
            'put the PEM text in "key", newlines written as \\n: '
            '"-----BEGIN PUBLIC KEY-----\\nMIIB...\\n-----END PUBLIC KEY-----\\n"',
        )
    return None


def _checks(config: Config) -> list[Problem]:
    problems: list[Problem] = []
    where = config.where("HASURA_GRAPHQL_JWT_SECRET")
    raw = config.get("HASURA_GRAPHQL_JWT_SECRET") or ""
    try:
        jwt = json.loads(raw)
    except ValueError:
        return [
            Problem(
                "error",
                f"{where}: HASURA_GRAPHQL_JWT_SECRET is not valid JSON",
                'use {"type":"HS256","key":"<at least 32 characters>"}',
            )
        ]
    if (jwt_problem := _jwt_problem(config, jwt)) is not None:
        problems.append(jwt_problem)
    problems += _cors_problems(config)
    from .replica import problems as replica_problems

    problems += replica_problems(config)
    if not config.is_local:
        for name in ("HASURA_GRAPHQL_ENABLE_CONSOLE", "HASURA_GRAPHQL_DEV_MODE"):
            if config.flag(name, False):
                problems.append(Problem("warning", f"{name}=true is ignored outside dev"))
    return problems


def _with_plugin_sources(config: Config, service: Service) -> Service:
    """Hasura is given the URL of every plugin source (HASURA_PLUGIN_<NAME>_DATABASE_URL,
    derived by the plugin for its own database role), so it serves a plugin's tables as
    that role, never as the superuser (docs/plugins/security.md)."""
    from dataclasses import replace

    # The bundles' rules cost ~5 ms of imports: a project without a plugin source skips them.
    if not any(n.startswith("HASURA_PLUGIN_") for n in config.names()):
        return service
    from nself_builtins.shared.boundary import HASURA_SOURCE_URL

    urls = sorted(n for n in config.names() if HASURA_SOURCE_URL.match(n))
    if not urls:
        return service
    return replace(service, environment=service.environment | {n: f"${{{n}}}" for n in urls})


class HasuraPlugin(ServicePlugin):
    """Hasura (and its read-only twin on the replica), its commands and its part of the
    hardening suite."""

    @hookimpl
    def contribute_services(self, config: Config) -> list[Service]:
        if not self.running(config):
            return []
        from . import replica

        primary = _with_plugin_sources(config, self.container(config))
        if not replica.runs(config):
            return [primary]
        return [primary, replica.service(config, primary)]

    @hookimpl
    def contribute_nginx(self, config: Config) -> list[Route]:
        if not self.running(config):
            return []
        from . import replica

        routes = self.public_routes(config)
        if replica.runs(config):
            routes.append(replica.route(config))
        return routes

    @hookimpl
    def register_commands(self, app: Typer) -> None:
        from .cli import app as hasura

        app.add_typer(hasura, rich_help_panel="Services")

    @hookimpl
    def harden(self, config: Config, stack: Stack, live: bool) -> list[Finding]:
        """The admin secret and JWT key; console, dev mode and CORS; anonymous permissions
        and the tenancy wall, from the project's Hasura metadata and migrations."""
        if not self.enabled(config):
            return []
        from .hardening import findings

        return findings(config, stack, live)


plugin = HasuraPlugin(
    Service(
        "hasura",
        IMAGE,
        title="Hasura",
        port=8080,
        environment={
            "HASURA_GRAPHQL_DATABASE_URL": "${DATABASE_URL}",
            "HASURA_GRAPHQL_METADATA_DATABASE_URL": "${DATABASE_URL}",
            "HASURA_GRAPHQL_ADMIN_SECRET": "${HASURA_GRAPHQL_ADMIN_SECRET}",
            "HASURA_GRAPHQL_JWT_SECRET": "${HASURA_GRAPHQL_JWT_SECRET}",
            "HASURA_GRAPHQL_ENABLE_CONSOLE": "${HASURA_GRAPHQL_CONSOLE_EFFECTIVE}",
            "HASURA_GRAPHQL_DEV_MODE": "${HASURA_GRAPHQL_DEV_MODE_EFFECTIVE}",
            "HASURA_GRAPHQL_CORS_DOMAIN": "${HASURA_GRAPHQL_CORS_DOMAIN_EFFECTIVE}",
            "HASURA_GRAPHQL_ENABLE_TELEMETRY": "false",
            "HASURA_GRAPHQL_SERVER_PORT": "8080",
            "HASURA_GRAPHQL_UNAUTHORIZED_ROLE": "public",
        },
        healthcheck=HealthCheck(
            ("CMD", "curl", "-fsS", "http://localhost:8080/healthz"),
            retries=10,
            start_period="30s",
        ),
        depends_on=("postgres",),
        health_url="http://hasura:8080/healthz",
        contract=HASURA,
    ),
    switch=Setting("HASURA_ENABLED", "true", "Run Hasura (required unless the stack has no API)."),
    image=Setting("HASURA_IMAGE", description="Hasura image."),
    routes=(
        Subdomain(
            "HASURA_SUBDOMAIN",
            "api",
            "Public subdomain of the GraphQL API.",
            websocket=True,
            rate_zone="graphql",
        ),
    ),
    settings=SETTINGS,
    env=_env,
    checks=_checks,
    off="HASURA_ENABLED=false: the stack has no GraphQL API",
)
