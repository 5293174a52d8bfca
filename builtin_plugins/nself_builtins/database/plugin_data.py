"""``nself plugin remove --delete-data``: a bundle's schema, what its role owns, its
migration history and the role, dropped by the superuser in one transaction."""

from __future__ import annotations

from nself_sdk import Config, NselfError

from .migrations.confine import ROLE_PREFIX
from .migrations.history import HISTORY


def drop(config: Config, plugin: str, role: str, schema: str) -> list[str]:
    """Drop them; nothing when the database refuses (something of the project's own still
    depends on the plugin's objects, say a view of yours over its table)."""
    import psycopg
    from psycopg import sql

    from .migrations.history import connect
    from .target import Target

    if not role.startswith(ROLE_PREFIX):
        raise NselfError(f"{role} is not a plugin's database role", "nothing was dropped")
    target = Target(config.project_dir, config, config.env)
    said: list[str] = []
    try:
        with connect(target.transport()) as conn, conn.transaction():
            known = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            owner = conn.execute(
                "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            if owner is not None and owner[0].strip('"') != role:
                raise NselfError(
                    f"the schema {schema} belongs to {owner[0]}, not to the plugin's role "
                    f"{role}: it is not the plugin's to drop",
                    "nothing was dropped; drop what is yours by hand",
                )
            if known:
                # RESTRICT: refused while an object of someone else depends on one of its.
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                if owner is not None:
                    said.append(f"dropped the database schema {schema} and all it held")
            history = conn.execute("SELECT to_regclass(%s)", (HISTORY,)).fetchone()
            if history and history[0] is not None:
                gone = conn.execute(
                    sql.SQL("DELETE FROM {} WHERE source = %s").format(sql.SQL(HISTORY)),
                    (plugin,),
                ).rowcount
                if gone:
                    said.append(f"forgot its {gone} applied migration(s)")
            if known:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
                said.append(f"dropped the database role {role}")
    except psycopg.Error as exc:
        why = (exc.diag.message_primary or str(exc)).strip()
        detail = (exc.diag.message_detail or "").strip().replace("\n", "; ")
        raise NselfError(
            f"plugin {plugin}: its database objects were not dropped: {why}"
            + (f" ({detail})" if detail else ""),
            "nothing was dropped and the plugin stays installed; drop what depends on it, "
            "then run the command again",
        ) from None
    return said
