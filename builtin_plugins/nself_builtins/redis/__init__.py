"""Redis for caching, sessions and queues: internal only and always password-protected."""

from __future__ import annotations

from urllib.parse import quote

from nself_sdk import Config, HealthCheck, Mount, Service, ServicePlugin, Setting
from nself_sdk.declare import Needs

IMAGE = "redis:7.4-alpine"


def _env(config: Config) -> dict[str, str]:
    password = quote(config.text("REDIS_PASSWORD"), safe="")
    return {
        "REDIS_HOST": "redis",
        "REDIS_PORT": "6379",
        "REDIS_URL": f"redis://:{password}@redis:6379/0",
    }


plugin = ServicePlugin(
    Service(
        "redis",
        IMAGE,
        title="Redis",
        role="optional",
        port=6379,
        command=(
            "redis-server",
            "--requirepass",
            "${REDIS_PASSWORD}",
            "--appendonly",
            "yes",
            "--maxmemory",
            "${REDIS_MAXMEMORY}",
            "--maxmemory-policy",
            "${REDIS_MAXMEMORY_POLICY}",
        ),
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
    ),
    switch=Setting("REDIS_ENABLED", "false", "Run Redis (host `redis`, port 6379)."),
    image=Setting("REDIS_IMAGE", description="Redis image."),
    settings=(
        Setting(
            "REDIS_PASSWORD",
            description="Password every Redis client must send (requirepass).",
            secret=True,
            min_length=24,
            generate="token",
        ),
        Setting("REDIS_MAXMEMORY", "256mb", "Memory limit of Redis (maxmemory)."),
        Setting("REDIS_MAXMEMORY_POLICY", "allkeys-lru", "What Redis evicts at the memory limit."),
    ),
    needs=(Needs("REDIS_PASSWORD", why="Redis never runs without one"),),
    env=_env,
)
