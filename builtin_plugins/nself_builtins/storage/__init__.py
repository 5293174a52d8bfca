"""MinIO: S3-compatible object storage at storage.{domain}; its console stays internal."""

from __future__ import annotations

from dataclasses import replace

from nself_builtins.shared.urls import public_url
from nself_sdk import (
    Config,
    HealthCheck,
    ImageContract,
    Mount,
    Service,
    ServicePlugin,
    Setting,
    Subdomain,
)
from nself_sdk.declare import Needs

IMAGE = "minio/minio:RELEASE.2025-04-22T22-12-26Z"
MINIO = ImageContract(
    image=IMAGE,
    source=(
        "https://github.com/minio/minio/blob/RELEASE.2025-04-22T22-12-26Z/Dockerfile.release",
        "https://github.com/minio/minio/blob/RELEASE.2025-04-22T22-12-26Z/dockerscripts/docker-entrypoint.sh",
        "https://github.com/minio/minio/blob/RELEASE.2025-04-22T22-12-26Z/docker-buildx.sh",
        "https://min.io/docs/minio/linux/reference/minio-server/settings/root-credentials.html",
    ),
    # No USER; the entrypoint steps down only when MINIO_USERNAME/MINIO_GROUPNAME are set.
    user=0,
    capabilities=(),
    writable=("/data",),
    writes=("/data",),
    # minio and mc are put on PATH (/opt/bin) in every release Dockerfile read.
    tools=("minio", "mc"),
    env=("MINIO_*", "MC_*"),
    # Without them MinIO starts with minioadmin:minioadmin; shorter than 3 / 8
    # characters it refuses to start.
    required=("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"),
    ports=(9000, 9001),
    # docker buildx --platform=linux/arm64,linux/amd64,linux/ppc64le,linux/s390x
    platforms=("linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x"),
    notes="Read from the release Dockerfile and buildx script of 2023-2024 releases (the "
    "copy at the pinned tag was not available); a shell or curl in the image is not relied "
    "on.",
)
# S3 clients stream large objects: no buffering, no body limit below the part size.
S3_PROXY = (
    "proxy_request_buffering off;",
    "proxy_buffering off;",
    "proxy_connect_timeout 300s;",
    "proxy_read_timeout 300s;",
    "proxy_send_timeout 300s;",
    "chunked_transfer_encoding off;",
)

# MinIO's Prometheus metrics (bucket names, object counts and sizes, drives, version) are
# for the monitoring stack, which reads them over the stack's network without a token
# (MINIO_PROMETHEUS_AUTH_TYPE=public): the public S3 route never passes them on. The
# v2, v3 and legacy paths (MinIO's docs/metrics).
METRICS_PATHS = ("/minio/v2/metrics", "/minio/metrics", "/minio/prometheus")


def console_routed(config: Config) -> bool:
    """The console is reachable through nginx in dev, elsewhere only when asked for."""
    return config.flag("STORAGE_CONSOLE_ENABLED", config.is_local)


def _env(config: Config) -> dict[str, str]:
    public = public_url(config, config.text("STORAGE_SUBDOMAIN", "storage"))
    return {
        "S3_ENDPOINT": "http://minio:9000",
        "S3_PUBLIC_ENDPOINT": public,
        "S3_REGION": config.text("STORAGE_REGION", "us-east-1"),
        "MINIO_BROWSER_REDIRECT_URL": public_url(
            config, config.text("STORAGE_CONSOLE_SUBDOMAIN", "storage-console")
        ),
    }


def _adapt(config: Config, service: Service) -> Service:
    if not config.flag("MONITORING_ENABLED", not config.is_local):
        return service
    # Prometheus scrapes the cluster metrics over the private network.
    env = dict(service.environment, MINIO_PROMETHEUS_AUTH_TYPE="public")
    return replace(service, environment=env)


plugin = ServicePlugin(
    Service(
        "minio",
        IMAGE,
        title="MinIO",
        role="optional",
        port=9000,
        command=("server", "/data", "--address", ":9000", "--console-address", ":9001"),
        environment={
            "MINIO_ROOT_USER": "${MINIO_ROOT_USER}",
            "MINIO_ROOT_PASSWORD": "${MINIO_ROOT_PASSWORD}",
            # MinIO's reverse-proxy setup (docs: "Configure NGINX Proxy for MinIO Server"):
            # the console at its own host, named by MINIO_BROWSER_REDIRECT_URL. No
            # MINIO_SERVER_URL: the console connects to the server at that address, which
            # must resolve to the server from inside the container (MinIO's words), and
            # storage.<domain> resolves to this machine or 127.0.0.1 there, where nothing
            # listens: console logins failed. S3 signatures need no such setting: nginx
            # forwards the public Host header.
            "MINIO_BROWSER_REDIRECT_URL": "${MINIO_BROWSER_REDIRECT_URL}",
            "MINIO_REGION": "${S3_REGION}",
            "MINIO_UPDATE": "off",
        },
        healthcheck=HealthCheck(("CMD", "mc", "ready", "local"), retries=10),
        mounts=(Mount("minio_data", "/data"),),
        health_url="http://minio:9000/minio/health/live",
        contract=MINIO,
    ),
    switch=Setting("STORAGE_ENABLED", "false", "Run MinIO object storage (host `minio`)."),
    image=Setting("MINIO_IMAGE", description="MinIO image.", wrong_names=("STORAGE_IMAGE",)),
    routes=(
        Subdomain(
            "STORAGE_SUBDOMAIN",
            "storage",
            "Public subdomain of the S3 API.",
            max_body_size="${STORAGE_MAX_BODY_SIZE}",
            extra=S3_PROXY,
            refused_paths=METRICS_PATHS,
        ),
        Subdomain(
            "STORAGE_CONSOLE_SUBDOMAIN",
            "storage-console",
            "Subdomain of the MinIO console (behind nginx's login).",
            port=9001,
            service="minio-console",
            websocket=True,
            internal_only=True,
            when=console_routed,
        ),
    ),
    settings=(
        Setting(
            "STORAGE_CONSOLE_ENABLED",
            None,
            "Route the MinIO console through nginx (default: dev only).",
        ),
        Setting("STORAGE_MAX_BODY_SIZE", "5g", "Largest upload through nginx (one S3 part)."),
        Setting("STORAGE_REGION", "us-east-1", "Region MinIO reports to S3 clients."),
        Setting(
            "MINIO_ROOT_USER",
            description="MinIO root access key.",
            secret=True,
            min_length=16,
            generate="password",
        ),
        Setting(
            "MINIO_ROOT_PASSWORD",
            description="MinIO root secret key.",
            secret=True,
            min_length=24,
            generate="token",
        ),
    ),
    # MinIO refuses to start with a shorter root user or password.
    needs=(Needs("MINIO_ROOT_USER", 3), Needs("MINIO_ROOT_PASSWORD", 8)),
    env=_env,
    adapt=_adapt,
)
