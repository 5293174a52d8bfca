"""`nself db pool ...`: the PgBouncer plugin's connection pool (engine: ``..pool``)."""

from __future__ import annotations

from dataclasses import asdict

import typer

from nself_sdk.console import emit_json, info, warn

from .options import EnvOpt, JsonOpt, resolve

app = typer.Typer(help="The connection pool (the PgBouncer plugin).", no_args_is_help=True)


@app.command("status")
def status_cmd(env: EnvOpt = None, as_json: JsonOpt = False) -> None:
    """Pools, clients waiting, server connections and average wait (SHOW POOLS, STATS)."""
    from nself_sdk import stack

    from ..pool import DIRECT, status

    target = resolve(env)
    found = status(target.config, target.stack or stack(target.config))
    if as_json:
        emit_json(asdict(found))
        return
    cfg = found.config
    info(
        f"PgBouncer: pool_mode={cfg.get('pool_mode', '?')} "
        f"default_pool_size={cfg.get('default_pool_size', '?')} "
        f"max_client_conn={cfg.get('max_client_conn', '?')}"
    )
    for line in found.drift:
        warn(line, "restart it to apply the setting: nself restart pgbouncer")
    waits = {s["database"]: s.get("avg_wait_time", 0) for s in found.stats}
    info(
        f"{'DATABASE':<16} {'USER':<14} {'MODE':<12} {'CL_ACTIVE':>9} {'CL_WAITING':>10} "
        f"{'SV_ACTIVE':>9} {'SV_IDLE':>7} {'SV_USED':>7} {'MAXWAIT':>8} {'AVG_WAIT':>9}"
    )
    for pool in found.pools:
        maxwait = pool.get("maxwait", 0) + pool.get("maxwait_us", 0) / 1_000_000
        avg = waits.get(pool["database"], 0) / 1000  # microseconds -> milliseconds
        info(
            f"{pool['database']:<16} {pool['user']:<14} {pool.get('pool_mode', ''):<12} "
            f"{pool.get('cl_active', 0):>9} {pool.get('cl_waiting', 0):>10} "
            f"{pool.get('sv_active', 0):>9} {pool.get('sv_idle', 0):>7} "
            f"{pool.get('sv_used', 0):>7} {maxwait:>7.3f}s {avg:>7.3f}ms"
        )
    routes = found.routes
    info("through the pool (DATABASE_POOL_URL): " + (", ".join(routes["pool"]) or "none"))
    direct = [f"{n} ({DIRECT[n]})" if n in DIRECT else n for n in routes["direct"]]
    info("straight to PostgreSQL: " + (", ".join(direct) or "none"))
    custom = [n for n in routes["direct"] if n not in DIRECT]
    if custom:
        info(
            f"  {', '.join(custom)}: connect with DATABASE_URL; give them ${{DATABASE_POOL_URL}} "
            "to go through the pool (session features, such as advisory locks, need DATABASE_URL)"
        )
