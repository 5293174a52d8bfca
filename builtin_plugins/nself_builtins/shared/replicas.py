"""The stack's PostgreSQL read replicas, by name: what the postgres plugin (the containers)
and the database plugin (`nself db replica`) agree on.

``POSTGRES_REPLICAS`` lists the replicas (``replica1,replica2``); each is the service
``postgres-<name>`` with its own data volume, streaming from the primary through the
physical replication slot ``nself_replica_<name>`` as the role ``nself_replicator``.
That role's password is derived from ``POSTGRES_PASSWORD`` (one secret to keep, rotated
with it), so the primary's init script and the replicas agree on it without another
secret in the env files or in any generated file.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import quote

from nself_sdk import Config, Problem

SETTING = "POSTGRES_REPLICAS"
# The replication role's password as the build derives it (never in an env file).
PASSWORD_SETTING = "POSTGRES_REPLICATION_PASSWORD"
ROLE = "nself_replicator"
SLOT_PREFIX = "nself_replica_"
# Lowercase, a letter first, '-' inside: a hostname part, a volume name and (with '_' for
# '-') a slot name. Short, so every derived name stays well under PostgreSQL's 63 bytes.
NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,22}[a-z0-9])?$")
# Each replica holds one WAL sender and one slot for good, and a base backup briefly needs
# two more senders; PostgreSQL's defaults are 10 of each (max_wal_senders,
# max_replication_slots), which backups and PITR share.
MAX_REPLICAS = 5
# What the derived password is made from besides POSTGRES_PASSWORD (the init script
# computes the same in SQL: sha256 of this prefix and the password, as hex).
DERIVE_PREFIX = "nself-replication:"


def names(config: Config) -> list[str]:
    """The replicas the configuration asks for, in the order written."""
    raw = config.text(SETTING)
    return [part.strip() for part in raw.split(",") if part.strip()]


def service(name: str) -> str:
    return f"postgres-{name}"


def slot(name: str) -> str:
    return SLOT_PREFIX + name.replace("-", "_")


def volume(name: str) -> str:
    return f"postgres_{name.replace('-', '_')}_data"


def name_of_slot(slot_name: str) -> str | None:
    """The replica a slot of nself's belongs to (``nself_replica_a_b`` -> ``a-b``)."""
    if not slot_name.startswith(SLOT_PREFIX):
        return None
    return slot_name[len(SLOT_PREFIX) :].replace("_", "-")


def replication_password(postgres_password: str) -> str:
    """The replication role's password: derived, so it needs no secret of its own."""
    return hashlib.sha256((DERIVE_PREFIX + postgres_password).encode()).hexdigest()


def url(config: Config, name: str) -> str:
    """A connection URL to the replica: the same user and database as the primary's (the
    replica is a copy of it), read-only because a hot standby refuses every write."""
    user = quote(config.text("POSTGRES_USER", "postgres"), safe="")
    password = quote(config.text("POSTGRES_PASSWORD"), safe="")
    db = config.text("POSTGRES_DB", "nself")
    return f"postgres://{user}:{password}@{service(name)}:5432/{db}?sslmode=disable"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a replica, or None."""
    if not NAME.match(name):
        return (
            f"{name!r} is not a replica name: 1-24 lowercase letters, digits or '-', "
            "starting with a letter and not ending with '-'"
        )
    return None


def problems(config: Config) -> list[Problem]:
    """POSTGRES_REPLICAS: valid names, no name twice, not more than MAX_REPLICAS."""
    found: list[Problem] = []
    listed = names(config)
    if not listed:
        return found
    where = config.where(SETTING)
    seen: set[str] = set()
    for name in listed:
        why = name_problem(name)
        if why is not None:
            found.append(Problem("error", f"{where}: {SETTING}: {why}", "e.g. replica1"))
        elif name in seen:
            found.append(Problem("error", f"{where}: {SETTING} names the replica {name!r} twice"))
        seen.add(name)
    if len(listed) > MAX_REPLICAS:
        found.append(
            Problem(
                "error",
                f"{where}: {SETTING} asks for {len(listed)} replicas; at most {MAX_REPLICAS}",
                "each replica holds a WAL sender and a slot of the primary, which backups "
                "and point-in-time recovery share",
            )
        )
    return found
