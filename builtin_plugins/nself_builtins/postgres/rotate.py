"""Changing the superuser password inside the running database (``nself secrets rotate``).

The server only ever sees a SCRAM-SHA-256 verifier, never the password itself, so the
new password cannot end up in PostgreSQL's logs or statistics. The replication role's
password is derived from it (``shared.replicas``): it changes in the same transaction, and
each replica picks it up when it is recreated with the new value (`nself start`).
"""

from __future__ import annotations

from typing import Any

from nself_builtins.shared.replicas import ROLE, replication_password
from nself_builtins.shared.secrets import scram_verifier
from nself_sdk import Config, NselfError


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def change_password(config: Config, password: str, runtime: Any) -> None:
    running = False
    if runtime is not None:
        running = any(s.name == "postgres" and s.running for s in runtime.status())
    if not running and runtime is None and not config.is_local:
        raise NselfError(
            f"POSTGRES_PASSWORD is also stored inside the {config.env} database, which nself "
            "reaches only on the server it deploys to; nothing was changed",
            f"set DEPLOY_HOST for {config.env} (see docs/deploy.md) and rotate again",
        )
    if not running:
        raise NselfError(
            "POSTGRES_PASSWORD is also stored inside the database, and the postgres service "
            "is not running, so it cannot be changed there; nothing was changed",
            "start the stack (`nself start`) and rotate again"
            if config.is_local
            else f"check it: nself status --env {config.env}",
        )
    user = config.text("POSTGRES_USER", "postgres")
    replication = scram_verifier(replication_password(password))
    sql = (
        "BEGIN;\n"
        f"ALTER ROLE {_ident(user)} WITH PASSWORD '{scram_verifier(password)}';\n"
        f"SELECT format('ALTER ROLE {ROLE} WITH PASSWORD %L', '{replication}')"
        f" WHERE EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') \\gexec\n"
        "COMMIT;\n"
    )
    result = runtime.exec(
        "postgres",
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", "postgres"],
        input=sql.encode("utf-8"),
        user="postgres",
    )
    if result.exit_code != 0:
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise NselfError(
            "could not change the password inside the database: "
            + (detail[-1] if detail else f"psql exited with {result.exit_code}"),
            "nothing was changed; check `nself logs postgres`",
        )
