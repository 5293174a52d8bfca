"""MeiliSearch full-text search at search.{domain}, protected by a master key."""

from __future__ import annotations

from dataclasses import replace

from nself_sdk import Config, HealthCheck, Mount, Service, ServicePlugin, Setting
from nself_sdk.declare import Needs, Subdomain

IMAGE = "getmeili/meilisearch:v1.11.3"

URL = "http://meilisearch:7700"


def _adapt(config: Config, service: Service) -> Service:
    env = dict(service.environment, MEILI_ENV="development" if config.is_local else "production")
    return replace(service, environment=env)


plugin = ServicePlugin(
    Service(
        "meilisearch",
        IMAGE,
        title="MeiliSearch",
        role="optional",
        port=7700,
        environment={
            "MEILI_MASTER_KEY": "${MEILI_MASTER_KEY}",
            "MEILI_ENV": "production",
            "MEILI_NO_ANALYTICS": "true",
            "MEILI_HTTP_ADDR": "0.0.0.0:7700",
            "MEILI_DB_PATH": "/meili_data/data.ms",
        },
        healthcheck=HealthCheck(
            ("CMD", "curl", "-fsS", "http://127.0.0.1:7700/health"), retries=10
        ),
        mounts=(Mount("meilisearch_data", "/meili_data"),),
        health_url=f"{URL}/health",
    ),
    switch=Setting("SEARCH_ENABLED", "false", "Run MeiliSearch (host `meilisearch`, port 7700)."),
    image=Setting(
        "MEILISEARCH_IMAGE", description="MeiliSearch image.", wrong_names=("SEARCH_IMAGE",)
    ),
    routes=(
        Subdomain(
            "SEARCH_SUBDOMAIN",
            "search",
            "Public subdomain of the search API.",
            max_body_size="100m",
        ),
    ),
    settings=(
        Setting(
            "MEILI_MASTER_KEY",
            description="MeiliSearch master key (derive API keys from it).",
            secret=True,
            min_length=32,
            generate="token",
        ),
    ),
    # MeiliSearch refuses to start in production mode with a key under 16 bytes.
    needs=(Needs("MEILI_MASTER_KEY", 16),),
    env={"MEILISEARCH_URL": URL, "SEARCH_URL": URL},
    adapt=_adapt,
)
