"""``nself plugin install|remove|list|status|logs|new|lint|pack|update``: a module-level
Typer app, added to the ``plugin`` group other plugins add to as well (the registry adds
``search`` and ``sign``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nself_sdk import EXIT_FAILED, NselfError, find_project
from nself_sdk import console as out

HELP = "Install, inspect and author plugins (bundles from a registry, folder or archive)."
PANEL = "Plugins"

app = typer.Typer()


@app.command("install")
def install(
    spec: Annotated[str, typer.Argument(help="NAME[@VERSION], ./folder or file.tar.gz.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an installed version.")] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Approve what the plugin may read and reach.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
) -> None:
    """Install a plugin bundle into this project (plugins/ and plugins.lock).

    It first shows what the plugin will be able to read and reach, and asks (or needs
    --yes)."""
    from .approval import approver
    from .sources import install_spec

    project = find_project()
    done = install_spec(project, spec, force, approver(project, yes))
    entry = done.entry
    if as_json:
        out.emit_json(
            {
                "name": entry.name,
                "version": entry.version,
                "sha256": entry.sha256,
                "port": entry.port,
                "replaced": done.replaced,
                "path": str(done.path.relative_to(project)),
            }
        )
        return
    port = f", port {entry.port}" if entry.port is not None else ""
    was = f" (was {done.replaced})" if done.replaced and done.replaced != entry.version else ""
    out.ok(f"installed {entry.name} {entry.version}{was}{port} in plugins/{entry.name}")
    _next_steps(done.path)


@app.command("remove")
def remove_cmd(
    name: Annotated[str, typer.Argument(help="Installed plugin.")],
    delete_data: Annotated[
        bool,
        typer.Option(
            "--delete-data",
            help="Also delete the plugin's volumes, its database schema and role "
            "(irreversible; asks, or needs --yes).",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Remove a plugin from the project. Its volumes, database schema and role stay unless
    --delete-data (with your yes)."""
    from nself_sdk import load_config, require_confirmation, require_yes

    from .data import data_summary, plugin_database, plugin_volumes
    from .data import delete_data as wipe
    from .store import read_lock, remove

    project = find_project()
    if name not in read_lock(project):
        remove(project, name)  # raises the "not installed" error
    summary = data_summary(project, name)
    volumes: list[str] = []
    project_name = ""
    database = plugin_database(project, name) if delete_data else None
    deleted: list[str] = []
    if delete_data:
        config = load_config(project)
        project_name = config.project_name
        volumes = plugin_volumes(project, name)
        require_confirmation(
            config, "delete-data", yes, detail=f"plugin {name}: {summary}", flag="--yes"
        )
        if database is not None:
            role, schema = database
            require_yes(
                f"Drop plugin {name}'s database schema {schema} with all its rows, and its "
                f"role {role}?",
                yes,
                needs=f"dropping plugin {name}'s database schema {schema} and role {role} "
                "needs your yes",
                hint="rerun with --yes once you are sure; nothing was changed",
            )
            from nself_sdk.host import plugin_manager

            # First: when the database refuses, nothing else is gone either.
            dropped = plugin_manager(project).hook.drop_plugin_database(
                config=config, plugin=name, role=role, schema=schema
            )
            if dropped is None:
                raise NselfError(
                    "no plugin of this project reaches its database, so the plugin's schema "
                    "and role cannot be dropped; nothing was changed",
                    "enable the database plugin, or remove the plugin without --delete-data",
                )
            deleted += dropped
        deleted += wipe(project_name, name, volumes)
    entry = remove(project, name)
    out.ok(f"removed {entry.name} {entry.version} from plugins/ and plugins.lock")
    for line in deleted:
        out.info(f"  {line}")
    if not delete_data and summary:
        out.info(f"  kept its data: {summary} (--delete-data deletes it)")
        if "database schema" in summary:
            out.info(f"  the schema and role stay until you drop them: {_drop_hint(name)}")
    out.info("next: nself build && nself start")


def _drop_hint(name: str) -> str:
    role = f"nself_plugin_{name.replace('-', '_')}"
    return (
        f"as the superuser (`nself db shell`): DROP OWNED BY {role}; DROP ROLE {role}; "
        "(with --delete-data, the removal drops them)"
    )


@app.command("list")
def list_cmd(
    show_all: Annotated[bool, typer.Option("--all", help="Include the builtin plugins.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """List the plugins of this project (bundles and Python plugins)."""
    from .info import plugin_rows

    rows = plugin_rows(_project_or_none(), show_all)
    if as_json:
        out.emit_json(rows)
        return
    if not rows:
        out.info("no plugins installed (`nself plugin install NAME`)")
        return
    for row in rows:
        port = str(row["port"]) if row.get("port") else "-"
        out.info(f"{row['name']:<22} {row['version']:<10} {row['kind']:<8} {port:<5} {row['tier']}")


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Health and missing settings of each installed plugin."""
    from .info import status_rows

    rows = status_rows(find_project())
    if as_json:
        out.emit_json(rows)
        return
    if not rows:
        out.info("no plugins installed")
        return
    for row in rows:
        mark = {"healthy": "ok", "running": "ok"}.get(row["health"], row["health"])
        line = f"{row['name']:<22} {row['version']:<10} {mark:<12}"
        if row.get("url"):
            line += f" {row['url']}"
        out.info(line)
        for missing in row["missing"]:
            out.warn(f"{row['name']}: {missing} is NOT SET", "set it in an env file")


@app.command("logs")
def logs(
    name: Annotated[str, typer.Argument(help="Installed plugin.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming.")] = False,
    tail: Annotated[int, typer.Option("--tail", help="Lines from the end.")] = 100,
) -> None:
    """Show a plugin's container logs (through the runtime plugin)."""
    from .info import show_logs

    show_logs(find_project(), name, follow, tail)


@app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="Plugin name (lowercase, '-').")],
    folder: Annotated[
        Path | None, typer.Option("--dir", help="Where to create it (default: ./NAME).")
    ] = None,
) -> None:
    """Create a plugin bundle to start from: manifest, migration, metadata, test."""
    from .authoring import scaffold

    target = folder or Path(name)
    written = scaffold(name, target)
    out.ok(f"created plugin {name} in {target} ({len(written)} files)")
    out.info(f"next: nself plugin lint {target}")


@app.command("lint")
def lint(
    folder: Annotated[Path, typer.Argument(help="Bundle folder.")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Check a bundle: every mistake with its file, line and field."""
    from nself_builtins.shared.manifest import lint_bundle

    bundle, problems = lint_bundle(folder)
    errors = [p for p in problems if p.level == "error"]
    if as_json:
        out.emit_json(
            {
                "ok": not errors,
                "problems": [
                    {"level": p.level, "message": p.message, "hint": p.hint} for p in problems
                ],
            }
        )
    else:
        for problem in problems:
            if problem.level == "error":
                out.error(problem.message, problem.hint)
            else:
                out.warn(problem.message, problem.hint)
        if bundle is not None:
            m = bundle.manifest
            out.ok(f"{m.name} {m.version} is a valid plugin bundle")
    if errors:
        raise typer.Exit(EXIT_FAILED)


@app.command("pack")
def pack(
    folder: Annotated[Path, typer.Argument(help="Bundle folder.")] = Path("."),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for the archive.")
    ] = None,
) -> None:
    """Pack a bundle into a reproducible NAME-VERSION.tar.gz with its sha256."""
    from .authoring import pack_bundle

    archive, digest = pack_bundle(folder, output)
    out.ok(f"packed {archive} ({archive.stat().st_size} bytes)")
    out.info(f"sha256 {digest}")


@app.command("update")
def update(
    names: Annotated[
        list[str] | None, typer.Argument(help="Plugins to update (default: all from a registry).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Only list what would be updated.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Approve new access a version asks for.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
) -> None:
    """Update installed registry plugins to their newest compatible version (a version
    that may read or reach more than the installed one needs your approval)."""
    from .approval import approver
    from .update import update_plugins

    project = find_project()
    approve = approver(project, yes, only_when_changed=True)
    results = update_plugins(project, list(names or []), check, approve)
    if as_json:
        out.emit_json(results)
        return
    if not results:
        out.info("no plugins installed from a registry")
        return
    for row in results:
        if row["action"] == "updated":
            out.ok(f"updated {row['name']} {row['installed']} -> {row['available']}")
        elif row["action"] == "update available":
            out.info(f"{row['name']} {row['installed']} -> {row['available']} available")
        else:
            out.info(f"{row['name']} {row['installed']}: {row['action']}")
    if any(r["action"] == "updated" for r in results):
        out.info("next: nself build && nself start")


def _next_steps(folder: Path) -> None:
    """What the user still has to do: secrets to generate, settings without a default."""
    from nself_builtins.shared.manifest import load_bundle

    manifest = load_bundle(folder, deep=False).manifest
    generated = [s.name for s in manifest.settings if s.generate]
    if manifest.database is not None:
        generated.append(manifest.database_password_setting)
    needed = [s.name for s in manifest.settings if s.required and not s.generate and not s.default]
    if needed:
        out.info(f"set {', '.join(needed)} in .env.dev (or .env.secrets if secret)")
    if generated:
        out.info(f"next: nself secrets generate (creates {', '.join(generated)}), then nself build")
    else:
        out.info("next: nself build && nself start")


def _project_or_none() -> Path | None:
    try:
        return find_project()
    except NselfError:
        return None
