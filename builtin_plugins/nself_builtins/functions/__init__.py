"""Functions: a serverless runtime for custom logic at functions.{domain}.

The project's ``functions/`` folder is mounted into the runtime; each file there is an
HTTP endpoint (the nhost/functions convention).
"""

from __future__ import annotations

from nself_builtins.shared.urls import public_url
from nself_sdk import Config, HealthCheck, Mount, Route, Service, Setting, hookimpl

IMAGE = "nhost/functions:1.2.0"


def enabled(config: Config) -> bool:
    return config.flag("FUNCTIONS_ENABLED", False)


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting("FUNCTIONS_ENABLED", "false", "Run the functions runtime (host `functions`)."),
        Setting("FUNCTIONS_IMAGE", IMAGE, "Functions runtime image."),
        Setting("FUNCTIONS_SUBDOMAIN", "functions", "Public subdomain of the functions."),
    ]


@hookimpl
def contribute_env(config: Config) -> dict[str, str]:
    if not enabled(config):
        return {}
    return {"FUNCTIONS_URL": "http://functions:3000"}


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    if not enabled(config):
        return []
    env = {
        "PORT": "3000",
        "NODE_ENV": "development" if config.is_local else "production",
        "NHOST_BACKEND_URL": public_url(config),
    }
    depends: tuple[str, ...] = ()
    if config.flag("HASURA_ENABLED", True):
        env.update(
            {
                "NHOST_GRAPHQL_URL": "${HASURA_GRAPHQL_URL}",
                "NHOST_ADMIN_SECRET": "${HASURA_GRAPHQL_ADMIN_SECRET}",
                "NHOST_JWT_SECRET": "${HASURA_GRAPHQL_JWT_SECRET}",
            }
        )
        depends = ("hasura",)
    return [
        Service(
            name="functions",
            title="Functions",
            image=config.text("FUNCTIONS_IMAGE", IMAGE),
            role="optional",
            port=3000,
            environment=env,
            healthcheck=HealthCheck(
                ("CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3000/healthz"),
                interval="10s",
                timeout="5s",
                retries=10,
                start_period="30s",
            ),
            depends_on=depends,
            mounts=(
                Mount("./functions", "/opt/project/functions", read_only=True),
                Mount("functions_node_modules", "/opt/project/node_modules"),
            ),
            health_url="http://functions:3000/healthz",
        )
    ]


@hookimpl
def contribute_nginx(config: Config) -> list[Route]:
    if not enabled(config):
        return []
    return [
        Route(
            config.text("FUNCTIONS_SUBDOMAIN", "functions"), "functions", 3000, service="functions"
        )
    ]
