"""Redis for caching, sessions and queues: internal only and always password-protected."""

from __future__ import annotations

from urllib.parse import quote

from nself_builtins.shared.images import OFFICIAL_ALPINE
from nself_sdk import (
    Config,
    HealthCheck,
    ImageContract,
    Mount,
    Problem,
    Service,
    ServicePlugin,
    Setting,
    hookimpl,
)
from nself_sdk.declare import Needs

from . import sentinel

IMAGE = "redis:7.4-alpine"
# The official image (docker-library, 7.4/alpine) at the pinned tag.
REDIS = ImageContract(
    image=IMAGE,
    source=(
        "https://github.com/redis/docker-library-redis/blob/release/7.4/alpine/Dockerfile",
        "https://github.com/docker-library/redis/blob/master/7.4/alpine/docker-entrypoint.sh",
        "https://github.com/docker-library/official-images/blob/master/library/redis",
    ),
    # adduser -S -G redis -u 999 redis (group 1000: alpine has a gid 999 already).
    user=999,
    username="redis",
    starts_as=0,
    # As root, under `set -e`: `find . \! -user redis -exec chown redis {} +` in /data
    # (CHOWN; reading the redis-owned 0700 appendonlydir that redis's umask 0077 makes
    # needs DAC_READ_SEARCH), then gosu redis (SETUID, SETGID).
    capabilities=("CHOWN", "DAC_READ_SEARCH", "SETGID", "SETUID"),
    chowns=("/data",),
    # `mkdir /data && chown redis:redis /data`; VOLUME /data, WORKDIR /data.
    writable=("/data",),
    writes=("/data",),
    # alpine:3.21 with busybox (sh, grep, find, wget), redis-server/redis-cli, gosu.
    # redis-sentinel is redis-server itself (`make install` links it; `redis-server
    # CONF --sentinel` is the same), which Sentinel mode runs.
    tools=("redis-server", "redis-cli", "gosu", "sh", "grep", "find", "wget"),
    # Neither the entrypoint nor redis reads env; redis-cli reads REDISCLI_AUTH.
    env=("REDISCLI_AUTH",),
    ports=(6379,),
    # Alpine variants are built for amd64, arm32v6, arm32v7, arm64v8, i386, ppc64le and
    # s390x (the library file lists them per tag; read for 6.x-7.2, 7.4 follows the same
    # generator).
    platforms=OFFICIAL_ALPINE,
    notes="redis runs with umask 0077 (the entrypoint sets it when it finds 0022): its "
    "files are 0600 and folders 0700, owned by uid 999.",
)


def _env(config: Config) -> dict[str, str]:
    password = quote(config.text("REDIS_PASSWORD"), safe="")
    found = {
        "REDIS_HOST": "redis",
        "REDIS_PORT": "6379",
        "REDIS_URL": f"redis://:{password}@redis:6379/0",
    }
    if sentinel.enabled(config):
        found.update(sentinel.env(config))
    return found


class RedisPlugin(ServicePlugin):
    """Redis, and with REDIS_SENTINEL_ENABLED its replica and sentinels (sentinel.py)."""

    @hookimpl
    def validate_config(self, config: Config) -> list[Problem]:
        off = [] if self.enabled(config) else sentinel.problems(config)
        return self.problems(config) + off

    @hookimpl
    def contribute_services(self, config: Config) -> list[Service]:
        if not self.running(config):
            return []
        service = self.container(config)
        return sentinel.services(service) if sentinel.enabled(config) else [service]


def _checks(config: Config) -> list[Problem]:
    return sentinel.problems(config)


plugin = RedisPlugin(
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
        # Started as root, the official entrypoint chowns what redis does not own in /data
        # (under `set -e`) and steps down to redis, whose umask 0077 makes appendonlydir
        # 0700: on the next start root without DAC_READ_SEARCH cannot search it and the
        # container exits. Run as redis from the start: the entrypoint skips both steps
        # and needs no capability; the volume is redis' from the image.
        user="redis",
        contract=REDIS,
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
        *sentinel.SETTINGS,
    ),
    needs=(Needs("REDIS_PASSWORD", why="Redis never runs without one"),),
    env=_env,
    checks=_checks,
)
