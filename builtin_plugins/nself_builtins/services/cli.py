"""``nself service …``: a module-level Typer app; the work is done by ``scaffold``."""

from __future__ import annotations

from typing import Annotated

import typer

PANEL = "Services"


app = typer.Typer(
    name="service",
    help="Custom services from templates (the CS_N slots of the env files).",
    no_args_is_help=True,
)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Service name; also its hostname and folder.")],
    template: Annotated[
        str | None,
        typer.Option("--template", "-t", help="Template (see `nself service templates`)."),
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Run this image instead (no code).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port the service listens on (default: next free).")
    ] = None,
    subdomain: Annotated[
        str | None, typer.Option(help="Public subdomain (default: the name, web templates).")
    ] = None,
    internal: Annotated[
        bool, typer.Option("--internal", help="No public route (workers are internal).")
    ] = False,
    use_existing: Annotated[
        bool, typer.Option("--use-existing", help="Give existing services/NAME a slot.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
) -> None:
    """Scaffold services/NAME from a template (or use --image) in the next free CS_N slot."""
    from dataclasses import asdict

    from nself_sdk import find_project
    from nself_sdk.console import emit_json, info, ok, warn

    from . import scaffold
    from .switches import SWITCHES

    if template in SWITCHES:
        from . import switches

        switch = switches.add(find_project(), name, template)
        if as_json:
            emit_json({"name": switch.name, "template": template, "env_file": ".env.dev",
                       "settings": dict(switch.on)})  # fmt: skip
            return
        ok(f"added {switch.name}: " + ", ".join(f"{k}={v}" for k, v in switch.on) + " in .env.dev")
        for line in switch.said:
            info(f"  {line}")
        info("next: nself build && nself start --all")
        return
    added = scaffold.add(
        find_project(), name, template, port, subdomain, internal, use_existing, image
    )
    if as_json:
        emit_json(asdict(added))
        return
    where = added.url or "internal only"
    source = f"template {added.template}" if added.template else f"image {image}"
    ok(f"added {added.name} ({source}) as CS_{added.slot} on port {added.port}: {where}")
    if added.files:
        info(f"  code: {added.folder}/ ({len(added.files)} files)")
    info(f"  slot: CS_{added.slot}_* in {added.env_file}")
    for message in added.warnings:
        warn(message)
    info("next: nself build && nself start")


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    env: Annotated[str | None, typer.Option("--env", help="local, staging or prod.")] = None,
) -> None:
    """Show the custom services of the project (CS_N slots)."""
    from nself_sdk import find_project, load_config
    from nself_sdk.console import emit_json, info

    from .listing import custom_services

    project = find_project()
    rows = custom_services(project, load_config(project, env))
    if as_json:
        emit_json(rows)
        return
    if not rows:
        info("no custom services; add one with `nself service add NAME --template T`")
        return
    info(f"{'SLOT':<6} {'NAME':<20} {'TEMPLATE':<14} {'PORT':<6} URL")
    for row in rows:
        where = "?" if row["url"] is None else row["url"] or "internal"
        port = "" if row["port"] is None else str(row["port"])
        template = row["template"] or "-"
        copies = f"  ({row['replicas']} replicas)" if row["replicas"] > 1 else ""
        info(f"{row['slot']:<6} {row['name']:<20} {template:<14} {port:<6} {where}{copies}")


@app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The custom service to remove.")],
    delete_code: Annotated[
        bool, typer.Option("--delete-code", help="Also delete services/NAME.")
    ] = False,
) -> None:
    """Free the service's CS_N slot; its code stays unless --delete-code."""
    from nself_sdk import find_project
    from nself_sdk.console import info, ok

    from . import scaffold
    from .switches import SWITCHES

    if name in SWITCHES:
        from . import switches

        switch = switches.remove(find_project(), name)
        ok(f"removed {name}: " + ", ".join(f"{k}={v}" for k, v in switch.off) + " in .env.dev")
        info("next: nself build && nself start --all (its containers are removed)")
        return
    removed = scaffold.remove(find_project(), name, delete_code)
    if removed.slot is None:  # only the code an earlier remove kept was left
        ok(f"deleted {removed.folder}/ (its slot was removed before)")
        return
    files = ", ".join(removed.files) or "no env file"
    ok(f"removed {removed.name} (CS_{removed.slot}) from {files}")
    if removed.deleted_code:
        info(f"  deleted {removed.folder}/")
    elif removed.kept_code:
        info(f"  kept its code in {removed.folder}/ (delete it with --delete-code)")
    info("next: nself build && nself start")


@app.command("templates")
def templates(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """List the service templates: name, language and description."""
    from nself_sdk.console import emit_json, info

    from .catalog import catalog

    items = list(catalog().values())
    if as_json:
        emit_json(
            [
                {
                    "name": t.name,
                    "language": t.language,
                    "kind": t.kind,
                    "description": t.description,
                    "manifest": t.manifest,
                    "websocket": t.websocket,
                    "public": t.public,
                }
                for t in items
            ]
        )
        return
    info(f"{'TEMPLATE':<16} {'LANGUAGE':<12} DESCRIPTION")
    for t in items:
        info(f"{t.name:<16} {t.language:<12} {t.description}")
    info(f"\n{len(items)} templates. Use: nself service add NAME --template TEMPLATE")
    from .switches import SWITCHES

    info("\nTemplates that switch on a part of the stack (no code):")
    for switch in SWITCHES.values():
        info(f"{switch.name:<16} {'stack':<12} {switch.description}")
