"""nself Admin: the local GUI companion, dev only, published on 127.0.0.1:3021 and nowhere else."""

from __future__ import annotations

from typing import Any

from nself_sdk import (
    Config,
    HealthCheck,
    Mount,
    PortBinding,
    Problem,
    Service,
    Setting,
    hookimpl,
    safety_rule,
)

IMAGE = "nself/nself-admin:0.9.0"
PORT = 3021
BIND = "127.0.0.1"


def enabled(config: Config) -> bool:
    return config.flag("ADMIN_ENABLED", False)


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting("ADMIN_ENABLED", "false", "Run the admin UI on 127.0.0.1:3021 (dev only)."),
        Setting("ADMIN_IMAGE", IMAGE, "Admin UI image."),
        Setting("ADMIN_PORT", str(PORT), "Host port of the admin UI (always on 127.0.0.1)."),
    ]


def allowed(config: Config) -> bool:
    """The safety table allows the admin UI locally only.

    Outside dev the environments plugin refuses ADMIN_ENABLED=true with one error; this
    plugin never contributes the container there either way.
    """
    return safety_rule(config.env, "admin") != "refuse"


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    if not enabled(config) or not allowed(config):
        return []
    port = config.int("ADMIN_PORT", PORT)
    if not 0 < port < 65536:
        return [Problem("error", f"{config.where('ADMIN_PORT')}: ADMIN_PORT must be 1-65535")]
    return []


@hookimpl
def contribute_env(config: Config) -> dict[str, str]:
    if not enabled(config) or not allowed(config):
        return {}
    return {"ADMIN_URL": f"http://{BIND}:{config.int('ADMIN_PORT', PORT)}"}


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    if not enabled(config) or not allowed(config):
        return []
    env = {
        "PORT": str(PORT),
        "HOSTNAME": "0.0.0.0",
        "NODE_ENV": "production",
        "NSELF_PROJECT_PATH": "/workspace",
        "NSELF_PROJECT_NAME": config.project_name,
        "NSELF_BASE_DOMAIN": config.domain,
        "DATABASE_URL": "${DATABASE_URL}",
    }
    depends = ["postgres"]
    if config.flag("HASURA_ENABLED", True):
        env["HASURA_GRAPHQL_ENDPOINT"] = "${HASURA_GRAPHQL_URL}"
        env["HASURA_GRAPHQL_ADMIN_SECRET"] = "${HASURA_GRAPHQL_ADMIN_SECRET}"
        depends.append("hasura")
    return [
        Service(
            name="admin",
            title="nself Admin",
            image=config.text("ADMIN_IMAGE", IMAGE),
            role="optional",
            port=PORT,
            environment=env,
            healthcheck=HealthCheck(
                ("CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{PORT}/api/health"),
                interval="10s",
                timeout="5s",
                retries=10,
                start_period="20s",
            ),
            depends_on=tuple(depends),
            mounts=(Mount("./", "/workspace"), Mount("admin_data", "/app/data")),
            # Never on a public interface, whatever the env files say.
            published=(PortBinding(PORT, config.int("ADMIN_PORT", PORT), BIND),),
            health_url=f"http://admin:{PORT}/api/health",
            direct_url=f"http://{BIND}:{config.int('ADMIN_PORT', PORT)}",
        )
    ]


@hookimpl
def register_commands(app: Any) -> None:
    from .cli import register

    register(app)
