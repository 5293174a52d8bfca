"""Functions: a serverless runtime for custom logic at functions.{domain}.

The project's ``functions/`` folder is mounted into the runtime; each file there is an
HTTP endpoint (the nhost/functions convention).
"""

from __future__ import annotations

from dataclasses import replace

from nself_builtins.shared.urls import public_url
from nself_sdk import Config, HealthCheck, Mount, Service, ServicePlugin, Setting, Subdomain

IMAGE = "nhost/functions:1.2.0"


def _adapt(config: Config, service: Service) -> Service:
    env = {
        "PORT": "3000",
        "NODE_ENV": "development" if config.is_local else "production",
        "NHOST_BACKEND_URL": public_url(config),
    }
    if not config.flag("HASURA_ENABLED", True):
        return replace(service, environment=env)
    env.update(
        {
            "NHOST_GRAPHQL_URL": "${HASURA_GRAPHQL_URL}",
            "NHOST_ADMIN_SECRET": "${HASURA_GRAPHQL_ADMIN_SECRET}",
            "NHOST_JWT_SECRET": "${HASURA_GRAPHQL_JWT_SECRET}",
        }
    )
    return replace(service, environment=env, depends_on=("hasura",))


plugin = ServicePlugin(
    Service(
        "functions",
        IMAGE,
        title="Functions",
        role="optional",
        port=3000,
        healthcheck=HealthCheck(
            ("CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3000/healthz"),
            retries=10,
            start_period="30s",
        ),
        mounts=(
            Mount("./functions", "/opt/project/functions", read_only=True),
            Mount("functions_node_modules", "/opt/project/node_modules"),
        ),
        health_url="http://functions:3000/healthz",
    ),
    switch=Setting("FUNCTIONS_ENABLED", "false", "Run the functions runtime (host `functions`)."),
    image=Setting("FUNCTIONS_IMAGE", description="Functions runtime image."),
    routes=(Subdomain("FUNCTIONS_SUBDOMAIN", "functions", "Public subdomain of the functions."),),
    env={"FUNCTIONS_URL": "http://functions:3000"},
    adapt=_adapt,
)
