"""MeiliSearch full-text search at search.{domain}, protected by a master key."""

from __future__ import annotations

from nself_sdk import Config, HealthCheck, Mount, Problem, Route, Service, Setting, hookimpl

IMAGE = "getmeili/meilisearch:v1.11.3"


def enabled(config: Config) -> bool:
    return config.flag("SEARCH_ENABLED", False)


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting("SEARCH_ENABLED", "false", "Run MeiliSearch (host `meilisearch`, port 7700)."),
        Setting("MEILISEARCH_IMAGE", IMAGE, "MeiliSearch image.", wrong_names=("SEARCH_IMAGE",)),
        Setting("SEARCH_SUBDOMAIN", "search", "Public subdomain of the search API."),
        Setting(
            "MEILI_MASTER_KEY",
            description="MeiliSearch master key (derive API keys from it).",
            secret=True,
            min_length=32,
            generate="token",
        ),
    ]


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    # MeiliSearch refuses to start in production mode with a key under 16 bytes.
    if enabled(config) and len(config.text("MEILI_MASTER_KEY")) < 16:
        return [
            Problem(
                "error",
                "SEARCH_ENABLED=true but MEILI_MASTER_KEY is missing or shorter than 16 characters",
                "run `nself secrets generate` or set MEILI_MASTER_KEY in .env.secrets",
            )
        ]
    return []


@hookimpl
def contribute_env(config: Config) -> dict[str, str]:
    if not enabled(config):
        return {}
    return {"MEILISEARCH_URL": "http://meilisearch:7700", "SEARCH_URL": "http://meilisearch:7700"}


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    if not enabled(config):
        return []
    return [
        Service(
            name="meilisearch",
            title="MeiliSearch",
            image=config.text("MEILISEARCH_IMAGE", IMAGE),
            role="optional",
            port=7700,
            environment={
                "MEILI_MASTER_KEY": "${MEILI_MASTER_KEY}",
                "MEILI_ENV": "development" if config.is_local else "production",
                "MEILI_NO_ANALYTICS": "true",
                "MEILI_HTTP_ADDR": "0.0.0.0:7700",
                "MEILI_DB_PATH": "/meili_data/data.ms",
            },
            healthcheck=HealthCheck(
                ("CMD", "curl", "-fsS", "http://127.0.0.1:7700/health"),
                interval="10s",
                timeout="5s",
                retries=10,
                start_period="10s",
            ),
            mounts=(Mount("meilisearch_data", "/meili_data"),),
            health_url="http://meilisearch:7700/health",
        )
    ]


@hookimpl
def contribute_nginx(config: Config) -> list[Route]:
    if not enabled(config):
        return []
    return [
        Route(
            config.text("SEARCH_SUBDOMAIN", "search"),
            "meilisearch",
            7700,
            service="meilisearch",
            max_body_size="100m",
        )
    ]
