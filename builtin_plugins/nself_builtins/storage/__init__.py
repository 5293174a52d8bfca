"""MinIO: S3-compatible object storage at storage.{domain}; its console stays internal."""

from __future__ import annotations

from nself_sdk import Config, HealthCheck, Mount, Problem, Route, Service, Setting, hookimpl

IMAGE = "minio/minio:RELEASE.2025-04-22T22-12-26Z"
# S3 clients stream large objects: no buffering, no body limit below the part size.
S3_PROXY = (
    "proxy_request_buffering off;",
    "proxy_buffering off;",
    "proxy_connect_timeout 300s;",
    "proxy_read_timeout 300s;",
    "proxy_send_timeout 300s;",
    "chunked_transfer_encoding off;",
)


def enabled(config: Config) -> bool:
    return config.flag("STORAGE_ENABLED", False)


def console_routed(config: Config) -> bool:
    """The console is reachable through nginx in dev, elsewhere only when asked for."""
    return config.flag("STORAGE_CONSOLE_ENABLED", config.is_local)


def _public(config: Config, subdomain: str) -> str:
    port = config.int("NGINX_HTTPS_PORT", 443)
    suffix = "" if port == 443 else f":{port}"
    return f"https://{subdomain}.{config.domain}{suffix}"


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting("STORAGE_ENABLED", "false", "Run MinIO object storage (host `minio`)."),
        Setting("MINIO_IMAGE", IMAGE, "MinIO image.", wrong_names=("STORAGE_IMAGE",)),
        Setting("STORAGE_SUBDOMAIN", "storage", "Public subdomain of the S3 API."),
        Setting(
            "STORAGE_CONSOLE_SUBDOMAIN",
            "storage-console",
            "Subdomain of the MinIO console (private networks only).",
        ),
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
    ]


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    if not enabled(config):
        return []
    problems = []
    if len(config.text("MINIO_ROOT_USER")) < 3:
        problems.append(
            Problem(
                "error",
                "STORAGE_ENABLED=true but MINIO_ROOT_USER is missing or shorter than 3 characters",
                "run `nself secrets generate` or set MINIO_ROOT_USER in .env.secrets",
            )
        )
    if len(config.text("MINIO_ROOT_PASSWORD")) < 8:
        problems.append(
            Problem(
                "error",
                "STORAGE_ENABLED=true but MINIO_ROOT_PASSWORD is missing or shorter than "
                "8 characters",
                "run `nself secrets generate` or set MINIO_ROOT_PASSWORD in .env.secrets",
            )
        )
    return problems


@hookimpl
def contribute_env(config: Config) -> dict[str, str]:
    if not enabled(config):
        return {}
    public = _public(config, config.text("STORAGE_SUBDOMAIN", "storage"))
    return {
        "S3_ENDPOINT": "http://minio:9000",
        "S3_PUBLIC_ENDPOINT": public,
        "S3_REGION": config.text("STORAGE_REGION", "us-east-1"),
        "MINIO_SERVER_URL": public,
        "MINIO_BROWSER_REDIRECT_URL": _public(
            config, config.text("STORAGE_CONSOLE_SUBDOMAIN", "storage-console")
        ),
    }


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    if not enabled(config):
        return []
    env = {
        "MINIO_ROOT_USER": "${MINIO_ROOT_USER}",
        "MINIO_ROOT_PASSWORD": "${MINIO_ROOT_PASSWORD}",
        "MINIO_SERVER_URL": "${MINIO_SERVER_URL}",
        "MINIO_BROWSER_REDIRECT_URL": "${MINIO_BROWSER_REDIRECT_URL}",
        "MINIO_REGION": "${S3_REGION}",
        "MINIO_UPDATE": "off",
    }
    if config.flag("MONITORING_ENABLED", not config.is_local):
        # Prometheus scrapes the cluster metrics over the private network.
        env["MINIO_PROMETHEUS_AUTH_TYPE"] = "public"
    return [
        Service(
            name="minio",
            title="MinIO",
            image=config.text("MINIO_IMAGE", IMAGE),
            role="optional",
            port=9000,
            command=("server", "/data", "--address", ":9000", "--console-address", ":9001"),
            environment=env,
            healthcheck=HealthCheck(
                ("CMD", "mc", "ready", "local"),
                interval="10s",
                timeout="5s",
                retries=10,
                start_period="10s",
            ),
            mounts=(Mount("minio_data", "/data"),),
            health_url="http://minio:9000/minio/health/live",
        )
    ]


@hookimpl
def contribute_nginx(config: Config) -> list[Route]:
    if not enabled(config):
        return []
    routes = [
        Route(
            config.text("STORAGE_SUBDOMAIN", "storage"),
            "minio",
            9000,
            service="minio",
            max_body_size=config.text("STORAGE_MAX_BODY_SIZE", "5g"),
            extra=S3_PROXY,
        )
    ]
    if console_routed(config):
        routes.append(
            Route(
                config.text("STORAGE_CONSOLE_SUBDOMAIN", "storage-console"),
                "minio",
                9001,
                service="minio-console",
                websocket=True,
                internal_only=True,
            )
        )
    return routes
