"""MeiliSearch full-text search at search.{domain}, protected by a master key."""

from __future__ import annotations

from dataclasses import replace

from nself_sdk import Config, HealthCheck, ImageContract, Mount, Service, ServicePlugin, Setting
from nself_sdk.declare import Needs, Subdomain

IMAGE = "getmeili/meilisearch:v1.11.3"
MEILISEARCH = ImageContract(
    image=IMAGE,
    source=(
        "https://github.com/meilisearch/meilisearch/blob/v1.11.3/Dockerfile",
        "https://github.com/meilisearch/meilisearch/blob/v1.11.3/.github/workflows/publish-docker-images.yml",
        "https://www.meilisearch.com/docs/learn/self_hosted/configure_meilisearch_at_launch",
    ),
    # No USER: alpine with `apk add libgcc tini curl`, ENTRYPOINT tini, WORKDIR /meili_data.
    user=0,
    capabilities=(),
    writable=("/meili_data",),
    writes=("/meili_data",),
    tools=("meilisearch", "tini", "curl", "sh"),
    # Every option is also a MEILI_* variable; in production mode it refuses to start
    # without a master key of at least 16 bytes.
    env=("MEILI_*",),
    required=("MEILI_MASTER_KEY",),
    ports=(7700,),
    # build-push-action: platforms linux/amd64,linux/arm64.
    platforms=("linux/amd64", "linux/arm64"),
)

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
        contract=MEILISEARCH,
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
