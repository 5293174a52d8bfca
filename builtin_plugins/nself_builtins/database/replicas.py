"""`nself db replica add|list|remove`: streaming read replicas of the stack's database.

The replicas themselves are services of the postgres plugin (one per name in
``POSTGRES_REPLICAS``, see ``nself_builtins.postgres.replicas``); this module keeps that
setting, prepares the primary for them and reads their state from it:

* the primary lets the replication role ``nself_replicator`` in (its password derived from
  POSTGRES_PASSWORD, set as a SCRAM verifier so the server never sees it) through one
  ``pg_hba.conf`` line, appended and reloaded;
* each replica has a physical replication slot, created before the replica starts, so the
  primary keeps every WAL segment the replica has yet to receive — and dropped when the
  replica is removed, so WAL does not pile up on the primary;
* state and lag come from the primary (``pg_replication_slots``, ``pg_stat_replication``).

An add that was interrupted (the setting written, the primary not yet prepared) is
finished by running it again; a remove that was interrupted is finished the same way.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from nself_builtins.shared import replicas as names
from nself_sdk import NselfError, UsageError

from .transport import DirectTransport, ServerTransport

if TYPE_CHECKING:
    from .target import Target
    from .transport import Transport

Say = Callable[[str], None]
HBA_LINE = f"host replication {names.ROLE} all scram-sha-256"


@dataclass
class Row:
    """One replica as the primary (and, for the local stack, the engine) sees it."""

    name: str
    service: str
    configured: bool
    state: str  # streaming, catchup, startup, disconnected, not started, removed
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    slot: str = ""
    slot_active: bool | None = None
    retained_bytes: int | None = None  # WAL the primary keeps for the slot
    wal_status: str | None = None
    container: str | None = None  # the engine's state, for the local stack

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# -- the primary -------------------------------------------------------------------------


F = TypeVar("F", bound=Callable[..., Any])


def refusals(what: str) -> Callable[[F], F]:
    """PostgreSQL's refusal as one line (all replication slots in use, a lost connection)."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            from .transport import psycopg_module

            try:
                return function(*args, **kwargs)
            except psycopg_module().Error as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise NselfError(
                    f"{what}: the primary said: {first}",
                    "see `nself db replica list` and `nself logs postgres`",
                ) from None

        return wrapped  # type: ignore[return-value]

    return decorate


SLOTS_SQL = """
SELECT s.slot_name, s.active, s.wal_status,
       CASE WHEN s.restart_lsn IS NULL THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint END,
       r.application_name, r.state,
       pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint,
       extract(epoch FROM r.replay_lag)::float8
  FROM pg_replication_slots s
  LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
 WHERE s.slot_type = 'physical' AND NOT s.temporary
 ORDER BY s.slot_name
"""


@dataclass
class Slot:
    name: str
    active: bool
    wal_status: str | None
    retained: int | None
    client: str | None
    state: str | None
    lag_bytes: int | None
    lag_seconds: float | None


@refusals("reading the replication slots")
def slots(transport: Transport) -> list[Slot]:
    """Every permanent physical replication slot of the primary, with its client's state."""
    with transport.connect(dbname="postgres", autocommit=True) as conn:
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
            raise NselfError(
                f"{transport.describe()} is a standby, not the primary",
                "point nself at the primary (NSELF_DB_URL, or the stack's postgres service)",
            )
        rows = conn.execute(SLOTS_SQL).fetchall()
    return [Slot(*row) for row in rows]


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@refusals("preparing the primary for replicas")
def prepare_primary(transport: Transport, password: str) -> list[str]:
    """Let the replicas in: the replication role (its password as a SCRAM verifier) and
    the pg_hba.conf line, reloaded and checked. Idempotent; returns what it changed."""
    from nself_builtins.shared.secrets import scram_verifier

    changed: list[str] = []
    verifier = scram_verifier(names.replication_password(password))
    with transport.connect(dbname="postgres", autocommit=True) as conn:
        level = conn.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
        if level == "minimal":
            raise NselfError(
                "the primary runs with wal_level=minimal, which cannot feed a replica",
                "remove the wal_level setting (PostgreSQL's default, replica, is what "
                "streaming needs) and restart the postgres service",
            )
        exists = conn.execute(
            "SELECT rolreplication FROM pg_roles WHERE rolname = %s", (names.ROLE,)
        ).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(  # a verifier, not the password: nothing to log
            f"{verb} ROLE {names.ROLE} WITH REPLICATION LOGIN NOSUPERUSER NOCREATEDB "
            f"NOCREATEROLE PASSWORD {_quote_literal(verifier)}"
        )
        if not exists:
            changed.append(f"created the replication role {names.ROLE}")
        rules = conn.execute(
            "SELECT count(*) FROM pg_hba_file_rules WHERE type = 'host'"
            " AND database = '{replication}' AND %s = ANY(user_name) AND error IS NULL",
            (names.ROLE,),
        ).fetchone()[0]  # type: ignore[index]
        if not rules:
            hba = conn.execute("SHOW hba_file").fetchone()[0]  # type: ignore[index]
            _append_hba(transport, hba)
            conn.execute("SELECT pg_reload_conf()")
            changed.append(f"let {names.ROLE} in for replication ({hba})")
            _wait_for_rule(conn)
    return changed


def _append_hba(transport: Transport, hba: str) -> None:
    """Append the line inside the postgres service: the file keeps its owner and mode, and
    an append never leaves a half-written file behind (a rewrite could)."""
    if isinstance(transport, DirectTransport):
        raise NselfError(
            "the primary does not let replicas in (no pg_hba.conf line for replication), "
            "and nself reaches its files only as the stack's postgres service",
            f"add `{HBA_LINE}` to {hba} and reload it (SELECT pg_reload_conf())",
        )
    script = (
        'grep -qxF "$1" "$0" 2>/dev/null || printf "\\n# nself: read replicas '
        '(nself db replica)\\n%s\\n" "$1" >>"$0"'
    )
    transport.run_tool("sh", ["-c", script, hba, HBA_LINE])


def _wait_for_rule(conn: Any) -> None:
    """Check the line as PostgreSQL parses the file on disk (pg_hba_file_rules), and give
    the postmaster a moment to finish the reload it was just asked for."""
    found = conn.execute(
        "SELECT error FROM pg_hba_file_rules WHERE %s = ANY(user_name)"
        " AND database = '{replication}'",
        (names.ROLE,),
    ).fetchall()
    errors = [row[0] for row in found if row[0]]
    if not found or errors:
        raise NselfError(
            "the primary's pg_hba.conf does not hold a valid replication line for "
            f"{names.ROLE}" + (f": {errors[0]}" if errors else ""),
            "check the file (`nself exec postgres -- sh -c 'cat $PGDATA/pg_hba.conf'`)",
        )
    time.sleep(0.2)


@refusals("creating the replica's slot")
def create_slot(transport: Transport, name: str) -> bool:
    """The replica's slot, reserving WAL from now on; False when it existed already."""
    slot = names.slot(name)
    with transport.connect(dbname="postgres", autocommit=True) as conn:
        if conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone():
            return False
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
    return True


@refusals("dropping the replica's slot")
def drop_slot(transport: Transport, name: str, timeout: float = 30.0) -> bool:
    """Drop the replica's slot (ending its WAL sender first when one still streams);
    False when there was none."""
    slot = names.slot(name)
    deadline = time.monotonic() + timeout
    with transport.connect(dbname="postgres", autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                return False
            if row[0] is None:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return True
            conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
            if time.monotonic() > deadline:
                raise NselfError(
                    f"the slot {slot} is still in use by a WAL sender (pid {row[0]})",
                    "stop the replica that streams from it, then run the command again",
                )
            time.sleep(0.2)


# -- state ---------------------------------------------------------------------------------


def rows(target: Target) -> list[Row]:
    """Every configured replica, and every slot of nself's whose replica was removed."""
    configured = names.names(target.config)
    transport = target.transport()
    found = {s.name: s for s in slots(transport)}
    containers = _containers(target)
    listed: list[Row] = []
    for name in configured:
        slot = found.get(names.slot(name))
        listed.append(_row(name, True, slot, containers.get(names.service(name))))
    for slot_name, slot in found.items():
        owner = names.name_of_slot(slot_name)
        if owner is not None and owner not in configured:
            listed.append(_row(owner, False, slot, containers.get(names.service(owner))))
    return listed


def _row(name: str, configured: bool, slot: Slot | None, container: str | None) -> Row:
    row = Row(name, names.service(name), configured, "", slot=names.slot(name))
    row.container = container
    if slot is None:
        row.state = "not started" if configured else "removed"
        return row
    row.slot_active = slot.active
    row.retained_bytes = slot.retained
    row.wal_status = slot.wal_status
    if not configured:
        row.state = "removed"
    elif slot.state:
        row.state = slot.state
        row.lag_bytes = max(slot.lag_bytes or 0, 0) if slot.lag_bytes is not None else None
        if row.lag_bytes == 0:
            row.lag_seconds = 0.0
        elif slot.lag_seconds is not None:
            row.lag_seconds = round(float(slot.lag_seconds), 3)
    else:
        row.state = "disconnected"
    return row


def _containers(target: Target) -> dict[str, str]:
    """The engine's view of the replicas' containers, for the stack on this machine."""
    from nself_builtins.shared.placement import runs_here

    if not runs_here(target.config) or isinstance(target.transport(), DirectTransport):
        return {}
    try:
        from nself_sdk import runtime

        states = runtime(target.config).status()
    except NselfError:
        return {}
    return {
        s.name: (s.health if s.running and s.health else s.state)
        for s in states
        if s.name.startswith("postgres-")
    }


# -- add and remove ------------------------------------------------------------------------


def env_file(target: Target) -> str:
    """Where the replicas of the target are kept: the developer's own `.env.local` for
    dev (`.env.dev` is read by every environment), the environment's file otherwise."""
    return ".env.local" if target.env == "dev" else f".env.{target.env}"


def next_name(configured: list[str], taken: set[str]) -> str:
    number = 1
    while f"replica{number}" in configured or f"replica{number}" in taken:
        number += 1
    return f"replica{number}"


def _write(target: Target, listed: list[str]) -> tuple[str, str | None]:
    """Write POSTGRES_REPLICAS, check that the target still builds, and return the file
    and its previous text (to put back if something later fails)."""
    from nself_builtins.shared.envedit import set_values
    from nself_sdk import plan

    file = env_file(target)
    path = target.project / file
    before = path.read_text(encoding="utf-8") if path.is_file() else None
    # An empty list leaves no line behind unless another file sets replicas (then it says
    # "none" here, over that file).
    elsewhere = [
        e
        for e in target.config.origins(names.SETTING)
        if e.file.startswith(".env") and e.file != file
    ]
    value = ",".join(listed) if listed or any(e.raw for e in elsewhere) else None
    set_values(path, {names.SETTING: value})
    try:
        plan(target.project, target.env)
    except BaseException:
        _restore(path, before)
        raise
    return file, before


def _restore(path: Any, before: str | None) -> None:
    from nself_sdk import write_atomic

    if before is None:
        path.unlink(missing_ok=True)
    else:
        write_atomic(path, before, path.stat().st_mode & 0o777)


@dataclass
class Added:
    name: str
    service: str
    file: str
    prepared: list[str]
    slot_created: bool
    started: bool
    row: Row | None


def add(target: Target, name: str | None, *, start: bool, timeout: float, say: Say) -> Added:
    """Add a replica (or finish one whose add was interrupted)."""
    if name is not None and (why := names.name_problem(name)) is not None:
        raise UsageError(why, "e.g. nself db replica add replica1")
    transport = _stack_transport(target)
    configured = names.names(target.config)
    present = {s.name: s for s in slots(transport)}
    taken = {n for s in present if (n := names.name_of_slot(s)) is not None}
    if name is None:
        name = next_name(configured, taken)
    finishing = name in configured and names.slot(name) not in present
    if name in configured and not finishing:
        raise UsageError(
            f"a replica named {name} exists already ({names.service(name)})",
            "see `nself db replica list`; choose another name, or remove it first: "
            f"nself db replica remove {name}",
        )
    listed = configured if finishing else [*configured, name]
    if len(listed) > names.MAX_REPLICAS:
        raise UsageError(
            f"the stack has {len(configured)} replicas already; at most {names.MAX_REPLICAS}",
            "each replica holds a WAL sender and a slot of the primary; remove one first",
        )
    prepared = prepare_primary(transport, target.config.text("POSTGRES_PASSWORD"))
    for note in prepared:
        say(f"  primary: {note}")
    file = env_file(target)
    if not finishing:
        file, _before = _write(target, listed)
    created = create_slot(transport, name)
    if created:
        say(f"  primary: created the replication slot {names.slot(name)}")
    started = False
    from nself_builtins.shared.placement import runs_here

    if created and runs_here(target.config):
        # A data copy left by a remove cut short cannot resume from a slot made now (the
        # WAL it needs may be recycled): it goes, and the replica takes a base backup.
        service = names.service(name)
        _stop(target, service)
        _remove_container_and_volume(target, service, names.volume(name), say)
    if start and runs_here(target.config):
        started = _start(target, name, timeout, say)
    row = next((r for r in rows(_reloaded(target)) if r.name == name), None)
    return Added(name, names.service(name), file, prepared, created, started, row)


def _stack_transport(target: Target) -> Transport:
    transport = target.transport()
    if isinstance(transport, DirectTransport):
        raise UsageError(
            "replicas are services of the stack; NSELF_DB_URL points nself at another server",
            "unset NSELF_DB_URL to work on the stack's own database",
        )
    return transport


def _reloaded(target: Target) -> Target:
    from dataclasses import replace

    from nself_sdk import load_config

    return replace(target, config=load_config(target.project, target.env), stack=None)


def _start(target: Target, name: str, timeout: float, say: Say) -> bool:
    """Build the target's files and bring the replica up (base backup, then streaming)."""
    from nself_sdk import build, runtime

    built = build(target.project, target.env)
    if built.changes:
        say("  rebuilt: " + ", ".join(sorted(built.changes)))
    service = names.service(name)
    say(f"  starting {service}: a base backup of the primary, then streaming")
    engine = runtime(built.plan.config)
    result = engine.up([service], wait=True, timeout=timeout)
    if service in result.failed or service not in result.started:
        raise NselfError(
            f"{service} did not become healthy within {timeout:.0f}s",
            f"see `nself logs {service}`; `nself db replica list` shows where it stands",
        )
    return True


@dataclass
class Removed:
    name: str
    file: str | None
    slot_dropped: bool
    stopped: bool
    volume_removed: bool
    stale: list[str] = field(default_factory=list)  # running services with the old URLs


def remove(target: Target, name: str, say: Say) -> Removed:
    """Remove a replica: stop it, drop its slot, take it out of the env files and remove
    its container and data volume (a copy of the primary's, which a later replica of the
    same name could not resume from). A remove that was interrupted is finished."""
    configured = names.names(target.config)
    known = ", ".join(configured) or "none"
    if names.name_problem(name) is not None:
        raise UsageError(
            f"there is no replica named {name!r} (replicas: {known})",
            "see `nself db replica list`",
        )
    if target.config.flag("HASURA_REPLICA_ENABLED", False) and configured == [name]:
        raise UsageError(
            f"the read-only Hasura reads from {name}, the only replica",
            "switch it off first: nself hasura replica disable",
        )
    transport = _stack_transport(target)
    present = {s.name for s in slots(transport)}
    if name not in configured and names.slot(name) not in present:
        raise UsageError(
            f"there is no replica named {name} (replicas: {known})",
            "see `nself db replica list`",
        )
    from nself_builtins.shared.placement import runs_here

    local = runs_here(target.config)
    service = names.service(name)
    stopped = False
    removed_volume = False
    # The env files first: the stack must still build without the replica (a service
    # reading ${DATABASE_REPLICA_URL} may refuse), and a refusal leaves it streaming.
    file = None
    if name in configured:
        file, _before = _write(target, [n for n in configured if n != name])
    if local:
        stopped = _stop(target, service)
        if stopped:
            say(f"  stopped {service}")
    elif isinstance(transport, ServerTransport):
        # On the environment's server: its container and data volume go now, so that it
        # stops streaming before its slot is dropped, and a replica added later under
        # the same name starts from a fresh base backup (the next deploy drops the
        # service from the release).
        stopped, removed_volume = _remove_on_server(transport, service, names.volume(name), say)
    dropped = drop_slot(transport, name)
    if dropped:
        say(f"  primary: dropped the replication slot {names.slot(name)}")
    stale: list[str] = []
    if local:
        from nself_sdk import build

        built = build(target.project, target.env)
        removed_volume = _remove_container_and_volume(target, service, names.volume(name), say)
        stale = _reading_replicas(built.plan.config, built.plan.stack)
    return Removed(name, file, dropped, stopped, removed_volume, stale)


def _reading_replicas(config: Any, stack: Any) -> list[str]:
    """Running services whose settings name the replicas' URLs: they keep the URLs they
    were started with (one of them the removed replica's) until they are made anew."""
    from nself_builtins.shared.envs import services_using
    from nself_sdk import runtime

    users = services_using(config, stack, ["DATABASE_REPLICA_URL", "DATABASE_REPLICA_URLS"])
    if not users:
        return []
    try:
        running = {s.name for s in runtime(config).status() if s.running}
    except NselfError:
        return []
    return [name for name in users if name in running]


def _stop(target: Target, service: str) -> bool:
    """Stop the replica's running container, found by the project's Compose labels (the
    generated files may no longer list it: a remove interrupted after its build)."""
    import subprocess

    label = f"label=com.docker.compose.project={target.config.project_name}"
    running = subprocess.run(
        ["docker", "ps", "-q", "--filter", label, "--filter",
         f"label=com.docker.compose.service={service}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    for container in running:
        subprocess.run(["docker", "stop", container], capture_output=True, check=False)
    return bool(running)


def _remove_container_and_volume(target: Target, service: str, volume: str, say: Say) -> bool:
    """Remove the replica's container and volume, found by the project's Compose labels
    (never by a name pattern)."""
    import subprocess

    project = target.config.project_name
    label = f"label=com.docker.compose.project={project}"
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", label, "--filter",
         f"label=com.docker.compose.service={service}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    for container in listed.stdout.split():
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
        say(f"  removed the container of {service}")
    volumes = subprocess.run(
        ["docker", "volume", "ls", "-q", "--filter", label, "--filter",
         f"label=com.docker.compose.volume={volume}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    removed = False
    for found in volumes.stdout.split():
        done = subprocess.run(["docker", "volume", "rm", found], capture_output=True, check=False)
        if done.returncode == 0:
            removed = True
            say(f"  removed its data volume {found} (a copy of the primary's)")
    return removed


# Runs on the environment's server ($1 project, $2 service, $3 volume): the same labels as
# above, never a name pattern. Prints "container" for each container removed and the
# name of each volume removed; stops at the first refusal (set -e).
_REMOVE_ON_SERVER = r"""
project="label=com.docker.compose.project=$1"
for id in $(docker ps -aq --filter "$project" --filter "label=com.docker.compose.service=$2")
do docker rm -f "$id" >/dev/null; echo container; done
for v in $(docker volume ls -q --filter "$project" --filter "label=com.docker.compose.volume=$3")
do docker volume rm "$v" >/dev/null; echo "$v"; done
"""


def _remove_on_server(
    transport: ServerTransport, service: str, volume: str, say: Say
) -> tuple[bool, bool]:
    """Remove the replica's container and data volume on the environment's server;
    returns whether a container and a volume were removed."""
    done = transport.server.run(_REMOVE_ON_SERVER, transport.project, service, volume)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise NselfError(
            f"removing {service} on the {transport.server.env} server: {said}",
            "run the command again; `nself status --env "
            f"{transport.server.env}` shows what runs there",
        )
    lines = done.stdout.split()
    stopped = "container" in lines
    if stopped:
        say(f"  removed the container of {service} on the {transport.server.env} server")
    gone = [line for line in lines if line != "container"]
    for found in gone:
        say(f"  removed its data volume {found} on the server (a copy of the primary's)")
    return stopped, bool(gone)
