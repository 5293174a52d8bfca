"""Redis Sentinel: the stack's Redis with a replica and a quorum of three sentinels.

With ``REDIS_SENTINEL_ENABLED=true``: ``redis`` starts as the master, ``redis-replica``
replicates it, and ``redis-sentinel`` runs three times (``redis-sentinel-1`` .. ``-3``),
all from the Redis image (``redis-server --sentinel``, as its ``redis-sentinel`` is). When
the master stops answering for ``REDIS_SENTINEL_DOWN_AFTER_MS``, the sentinels agree (2
of 3) and promote the replica; the old master, back, is made a replica of the new one.

Every node is tracked by its host name, not its address (``replica-announce-ip`` and the
sentinels' ``resolve-hostnames``/``announce-hostnames``), so a container that comes back
at another address is still the node the sentinels know. A node keeps its role in a
config file on its volume (``/data/nself-redis.conf``, rewritten by the sentinels at a
failover), so a restart does not turn a promoted replica back into a replica of a
stopped master. A sentinel's own file lives in its container: a new container (after
``nself down``, or a changed setting) first asks ``redis-replica`` whether it was promoted
(it starts as a replica, so it says master only then) and watches whichever node is the
master, never a demoted one. Passwords stay on the command line as for the plain Redis
(``requirepass``, and ``masterauth`` for a node that becomes a replica).

Clients find the master by asking a sentinel: ``REDIS_SENTINELS`` (the three
``HOST:26379``) and ``REDIS_SENTINEL_MASTER`` (the name), with ``REDIS_PASSWORD`` for both
the sentinels and the nodes.
"""

from __future__ import annotations

from dataclasses import replace

from nself_builtins.shared.service_replicas import replica_host, replicated
from nself_sdk import Config, HealthCheck, Mount, Problem, Service, Setting

REPLICA = "redis-replica"
SENTINEL = "redis-sentinel"
SENTINELS = 3
PORT = 26379
CONF = "/data/nself-redis.conf"

SETTINGS = (
    Setting(
        "REDIS_SENTINEL_ENABLED",
        "false",
        "Give Redis a replica and three sentinels that promote it when the master fails "
        "(`nself service add redis-sentinel --template redis-sentinel`).",
    ),
    Setting(
        "REDIS_SENTINEL_MASTER",
        "mymaster",
        "The name clients ask the sentinels for (SENTINEL get-master-addr-by-name).",
    ),
    Setting(
        "REDIS_SENTINEL_DOWN_AFTER_MS",
        "5000",
        "How long the master may not answer before the sentinels fail over (ms).",
    ),
)


def enabled(config: Config) -> bool:
    return config.flag("REDIS_ENABLED", False) and config.flag("REDIS_SENTINEL_ENABLED", False)


def problems(config: Config) -> list[Problem]:
    if not config.flag("REDIS_SENTINEL_ENABLED", False):
        return []
    found = []
    if not config.flag("REDIS_ENABLED", False):
        found.append(
            Problem(
                "error",
                f"{config.where('REDIS_SENTINEL_ENABLED')}: REDIS_SENTINEL_ENABLED=true but "
                "Redis is off",
                "set REDIS_ENABLED=true (Sentinel watches the stack's Redis)",
            )
        )
    master = config.text("REDIS_SENTINEL_MASTER")
    if not master.replace("-", "").replace("_", "").isalnum() or len(master) > 40:
        found.append(
            Problem(
                "error",
                f"{config.where('REDIS_SENTINEL_MASTER')}: REDIS_SENTINEL_MASTER={master!r} "
                "is not a plain name",
                "use 1-40 letters, digits, '-' or '_' (e.g. mymaster)",
            )
        )
    down = config.text("REDIS_SENTINEL_DOWN_AFTER_MS")
    if not (down.isascii() and down.isdigit()) or not 1000 <= int(down) <= 600000:
        found.append(
            Problem(
                "error",
                f"{config.where('REDIS_SENTINEL_DOWN_AFTER_MS')}: "
                f"REDIS_SENTINEL_DOWN_AFTER_MS={down!r} is not 1000-600000",
                "milliseconds the master may be silent before a failover (default 5000)",
            )
        )
    return found


def env(config: Config) -> dict[str, str]:
    hosts = ",".join(f"{replica_host(SENTINEL, k)}:{PORT}" for k in range(1, SENTINELS + 1))
    return {"REDIS_SENTINELS": hosts}


def _node(host: str, first_line: str) -> str:
    """A node's start: its role file on the volume (kept once written: the sentinels
    rewrite it), then redis-server with it and the stack's settings."""
    return (
        f'conf={CONF}; [ -s "$conf" ] || printf "%s\\n" "{first_line}" >"$conf"; '
        'exec redis-server "$conf" --requirepass "$REDISCLI_AUTH" '
        '--masterauth "$REDISCLI_AUTH" --appendonly yes '
        f"--replica-announce-ip {host} "
        '--maxmemory "$MAXMEMORY" --maxmemory-policy "$MAXMEMORY_POLICY"'
    )


# A node is ready when it serves as the master, or as a replica whose link to the master is
# up: a sentinel started before a replica is linked learns of it only at its next INFO
# (every 10 s), and with no replica known it cannot fail over.
NODE_HEALTH = HealthCheck(
    (
        "CMD-SHELL",
        "redis-cli -h 127.0.0.1 info replication | "
        "grep -q -e '^role:master' -e '^master_link_status:up'",
    ),
    interval="5s",
    timeout="3s",
    retries=10,
    start_period="5s",
)


def master(service: Service) -> Service:
    """The stack's ``redis``, as the first master of the group."""
    return replace(
        service,
        command=("sh", "-c", _node("redis", "# nself: starts as the master")),
        healthcheck=NODE_HEALTH,
        environment={
            **service.environment,
            "MAXMEMORY": "${REDIS_MAXMEMORY}",
            "MAXMEMORY_POLICY": "${REDIS_MAXMEMORY_POLICY}",
        },
    )


def replica(service: Service) -> Service:
    """``redis-replica``: a replica of ``redis`` from its first start. It does not wait for
    ``redis`` (it retries the link by itself): after a failover ``redis`` is the replica of
    this one, and each waiting for the other would start neither."""
    return replace(
        master(service),
        name=REPLICA,
        title="Redis replica",
        command=("sh", "-c", _node(REPLICA, "replicaof redis 6379")),
        mounts=(Mount("redis_replica_data", "/data"),),
    )


def sentinel_command() -> tuple[str, ...]:
    lines = [
        f"port {PORT}",
        "sentinel resolve-hostnames yes",
        "sentinel announce-hostnames yes",
        "sentinel announce-ip $SENTINEL_HOST",
        "sentinel monitor $MASTER $primary 6379 2",
        "sentinel auth-pass $MASTER $REDISCLI_AUTH",
        "sentinel down-after-milliseconds $MASTER $DOWN_AFTER",
        "sentinel failover-timeout $MASTER 60000",
        "sentinel parallel-syncs $MASTER 1",
        "requirepass $REDISCLI_AUTH",
        "sentinel sentinel-pass $REDISCLI_AUTH",
    ]
    written = " ".join(f'"{line}"' for line in lines)
    # Written once per container (the sentinel rewrites it with what it learns); the
    # password comes from the environment, never from this command line. The master is
    # the replica when it says so (it was promoted: after a failover a new sentinel that
    # watched `redis`, a replica by then, would hand clients a read-only node and abort
    # every failover with no good slave), `redis` otherwise.
    find = (
        f"primary=redis; redis-cli -h {REPLICA} -p 6379 info replication 2>/dev/null "
        f"| grep -q '^role:master' && primary={REPLICA}; "
    )
    return (
        "sh",
        "-c",
        f'conf=/tmp/sentinel.conf; [ -s "$conf" ] || {{ {find}'
        f'printf "%s\\n" {written} >"$conf"; }}; '
        'exec redis-server "$conf" --sentinel',
    )


def sentinels(service: Service) -> list[Service]:
    """``redis-sentinel`` three times, each announcing its own host name."""
    base = replace(
        service,
        name=SENTINEL,
        title="Redis Sentinel",
        port=PORT,
        command=sentinel_command(),
        environment={
            "REDISCLI_AUTH": "${REDIS_PASSWORD}",
            "MASTER": "${REDIS_SENTINEL_MASTER}",
            "DOWN_AFTER": "${REDIS_SENTINEL_DOWN_AFTER_MS}",
        },
        healthcheck=HealthCheck(
            ("CMD-SHELL", f"redis-cli -h 127.0.0.1 -p {PORT} ping | grep -q PONG"),
            interval="5s",
            timeout="3s",
            retries=10,
            start_period="5s",
        ),
        mounts=(),
        # Both nodes ready (the replica linked), so each sentinel's first INFO finds the
        # replica it would promote.
        depends_on=("redis", REPLICA),
    )
    return [
        replace(m, environment={**m.environment, "SENTINEL_HOST": replica_host(SENTINEL, k)})
        for k, m in enumerate(replicated(base, SENTINELS), start=1)
    ]


def services(service: Service) -> list[Service]:
    """The whole group: master, replica, sentinels."""
    return [master(service), replica(service), *sentinels(service)]
