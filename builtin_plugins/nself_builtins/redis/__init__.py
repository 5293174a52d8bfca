"""Redis for caching, sessions and queues: internal only and always password-protected."""

from __future__ import annotations

from urllib.parse import quote

from nself_sdk import Config, HealthCheck, Mount, Problem, Service, Setting, hookimpl

IMAGE = "redis:7.4-alpine"


def enabled(config: Config) -> bool:
    return config.flag("REDIS_ENABLED", False)


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting("REDIS_ENABLED", "false", "Run Redis (host `redis`, port 6379)."),
        Setting("REDIS_IMAGE", IMAGE, "Redis image."),
        Setting(
            "REDIS_PASSWORD",
            description="Password every Redis client must send (requirepass).",
            secret=True,
            min_length=24,
            generate="token",
        ),
        Setting("REDIS_MAXMEMORY", "256mb", "Memory limit of Redis (maxmemory)."),
        Setting("REDIS_MAXMEMORY_POLICY", "allkeys-lru", "What Redis evicts at the memory limit."),
    ]


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    if enabled(config) and not config.text("REDIS_PASSWORD"):
        return [
            Problem(
                "error",
                "REDIS_ENABLED=true but REDIS_PASSWORD is empty: Redis never runs without one",
                "run `nself secrets generate` or set REDIS_PASSWORD in .env.secrets",
            )
        ]
    return []


@hookimpl
def contribute_env(config: Config) -> dict[str, str]:
    if not enabled(config):
        return {}
    password = quote(config.text("REDIS_PASSWORD"), safe="")
    return {
        "REDIS_HOST": "redis",
        "REDIS_PORT": "6379",
        "REDIS_URL": f"redis://:{password}@redis:6379/0",
    }


def command() -> tuple[str, ...]:
    return (
        "redis-server",
        "--requirepass",
        "${REDIS_PASSWORD}",
        "--appendonly",
        "yes",
        "--maxmemory",
        "${REDIS_MAXMEMORY}",
        "--maxmemory-policy",
        "${REDIS_MAXMEMORY_POLICY}",
    )


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    if not enabled(config):
        return []
    return [
        Service(
            name="redis",
            title="Redis",
            image=config.text("REDIS_IMAGE", IMAGE),
            role="optional",
            port=6379,
            command=command(),
            # redis-cli reads the password from REDISCLI_AUTH, so the health check
            # authenticates without putting the password on a command line.
            environment={"REDISCLI_AUTH": "${REDIS_PASSWORD}"},
            healthcheck=HealthCheck(
                ("CMD-SHELL", "redis-cli -h 127.0.0.1 ping | grep -q PONG"),
                interval="5s",
                timeout="3s",
                retries=10,
                start_period="5s",
            ),
            mounts=(Mount("redis_data", "/data"),),
            # The official image chowns /data and drops to the redis user on start.
            cap_add=("CHOWN", "SETGID", "SETUID"),
        )
    ]
