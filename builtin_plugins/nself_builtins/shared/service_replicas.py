"""Replicas of a stateless service: N containers of one definition, balanced by nginx.

A service with N replicas becomes N services of the stack: the first keeps the service's
name (``web``, so ``depends_on: web`` and an unchanged single-replica stack stay as they
are), the others are ``web-2`` .. ``web-N``. Every replica also answers to ``web-K``: one
name per replica, each one address, which nginx's upstream resolves. Inside the stack
``web`` is the first replica only (one name belongs to one service); the public route
spreads requests over all of them. Labels tie a group together, so nginx (one upstream
with passive health) and the lifecycle (replace one at a time) find its members without
knowing who made it.
"""

from __future__ import annotations

from dataclasses import replace

from nself_sdk import Config, Problem, Service, Stack

# Which service a container is a replica of, its number (1-based) and how many there are.
REPLICA_OF = "org.nself.replica-of"
REPLICA = "org.nself.replica"
REPLICAS = "org.nself.replicas"
# More would not make one machine faster: each replica is a whole process of the service.
MAX_REPLICAS = 20
# nginx's container looks the replicas' names up this often (seconds); a restarted replica
# has a new address, which nginx sends to only after its next look-up and reload.
RESOLVE_INTERVAL = 2


def replica_name(name: str, number: int) -> str:
    """The stack name of replica ``number`` of ``name`` (the first keeps the name)."""
    return name if number == 1 else f"{name}-{number}"


def replica_host(name: str, number: int) -> str:
    """The host name only replica ``number`` answers to (``web-1``, ``web-2``, ...)."""
    return f"{name}-{number}"


def replicated(service: Service, count: int) -> list[Service]:
    """``service`` as ``count`` containers (itself alone when ``count`` is 1)."""
    if count <= 1:
        return [service]
    members = []
    for number in range(1, count + 1):
        name = replica_name(service.name, number)
        own = replica_host(service.name, number)
        aliases = {*service.aliases, own}
        health_url = service.health_url
        if health_url:
            health_url = health_url.replace(f"//{service.name}:", f"//{own}:", 1)
        members.append(
            replace(
                service,
                name=name,
                title=f"{service.display} ({number}/{count})",
                aliases=tuple(sorted(aliases - {name})),
                health_url=health_url,
                labels={
                    **service.labels,
                    REPLICA_OF: service.name,
                    REPLICA: str(number),
                    REPLICAS: str(count),
                },
            )
        )
    return members


def reserved_names(name: str, count: int) -> set[str]:
    """Every name a group of ``count`` replicas of ``name`` takes on the network."""
    if count <= 1:
        return {name}
    return {name} | {n for k in range(1, count + 1) for n in (replica_name(name, k),
                                                              replica_host(name, k))}  # fmt: skip


def group(stack: Stack, name: str) -> list[Service]:
    """The replicas of ``name`` in order, or ``[]`` when it is not replicated."""
    members = [s for s in stack.services if s.labels.get(REPLICA_OF) == name]
    return sorted(members, key=lambda s: int(s.labels.get(REPLICA, "0")))


def groups(stack: Stack) -> dict[str, list[Service]]:
    """Every replicated service's members, by the name of the group."""
    found: dict[str, list[Service]] = {}
    for service in stack.services:
        of = service.labels.get(REPLICA_OF)
        if of:
            found.setdefault(of, []).append(service)
    return {
        name: sorted(members, key=lambda s: int(s.labels.get(REPLICA, "0")))
        for name, members in sorted(found.items())
    }


def count_problem(config: Config, setting: str) -> Problem | None:
    """``setting`` must be a whole number of replicas from 1 to MAX_REPLICAS."""
    raw = config.text(setting)
    if not raw:
        return None
    where = config.where(setting)
    if not (raw.isascii() and raw.isdigit()):  # str.isdigit alone takes any digit ('²')
        return Problem(
            "error",
            f"{where}: {setting}={raw!r} is not a number of replicas",
            f"write a whole number from 1 to {MAX_REPLICAS} (1: one container, the default)",
        )
    count = int(raw)
    if count < 1:
        return Problem(
            "error",
            f"{where}: {setting}=0: a service runs at least one replica",
            "write 1 or more; to stop running it, remove the service (or switch it off)",
        )
    if count > MAX_REPLICAS:
        return Problem(
            "error",
            f"{where}: {setting}={count} is more than {MAX_REPLICAS} replicas",
            f"use at most {MAX_REPLICAS} on one machine; more capacity comes from another "
            "server (nself nginx upstream add NAME --server HOST:PORT)",
        )
    return None


def count(config: Config, setting: str) -> int:
    """The replica count ``setting`` asks for (1 when unset or invalid: validation says so)."""
    raw = config.text(setting)
    ok = raw.isascii() and raw.isdigit()
    return int(raw) if ok and 1 <= int(raw) <= MAX_REPLICAS else 1


def rolling_stages(stack: Stack, names: list[str], running: set[str]) -> list[list[str]]:
    """``names`` in the order that replaces replicas one at a time.

    The first stage is everything except the running replicas that must wait their turn:
    of each group, one running member goes with the first stage; each later stage takes
    the next running member of every group. So at every moment all but one replica of a
    group serve (the new ones, then the old ones not yet replaced).
    """
    held: list[list[str]] = []
    for members in groups(stack).values():
        waiting = [s.name for s in members if s.name in names and s.name in running]
        for index, name in enumerate(waiting[1:]):
            while len(held) <= index:
                held.append([])
            held[index].append(name)
    later = {name for stage in held for name in stage}
    first = [name for name in names if name not in later]
    return [stage for stage in [first, *held] if stage]
