"""A removed plugin's data: named volumes, and its database schema and role (dropped by the
database capability, through the hook ``drop_plugin_database``)."""

from __future__ import annotations

from pathlib import Path

from nself_sdk import NselfError


def data_summary(project: Path, name: str) -> str:
    """What data the installed plugin ``name`` has: volumes and table prefix."""
    from nself_builtins.shared.manifest import load_bundle

    from .store import PLUGINS_DIR, volume_name

    folder = project / PLUGINS_DIR / name
    if not (folder / "plugin.toml").is_file():
        return ""
    try:
        manifest = load_bundle(folder).manifest
    except NselfError:
        return ""
    parts = []
    if manifest.service is not None and manifest.service.volumes:
        names = [volume_name(name, k) for k in sorted(manifest.service.volumes)]
        parts.append("volumes " + ", ".join(names))
    if manifest.database is not None and manifest.database.migrations:
        parts.append(f"the database schema {manifest.database.schema}")
    return "; ".join(parts)


def plugin_database(project: Path, name: str) -> tuple[str, str] | None:
    """The database role and schema of the installed plugin ``name``, when it has any."""
    from nself_builtins.shared.boundary import role_name
    from nself_builtins.shared.manifest import load_bundle

    from .store import PLUGINS_DIR

    manifest = load_bundle(project / PLUGINS_DIR / name).manifest
    if manifest.database is None:
        return None
    return role_name(name), manifest.database.schema


def plugin_volumes(project: Path, name: str) -> list[str]:
    from nself_builtins.shared.manifest import load_bundle

    from .store import PLUGINS_DIR, volume_name

    manifest = load_bundle(project / PLUGINS_DIR / name).manifest
    if manifest.service is None:
        return []
    return [volume_name(name, k) for k in sorted(manifest.service.volumes)]


def _docker(argv: list[str]) -> tuple[int, str]:
    import subprocess

    done = subprocess.run(["docker", *argv], capture_output=True, text=True, check=False)
    return done.returncode, (done.stdout + done.stderr).strip()


def delete_data(project_name: str, service: str, volumes: list[str]) -> list[str]:
    """Remove the plugin's container and its named volumes (Compose: PROJECT_VOLUME).

    Runs before the plugin is removed: if anything fails, the plugin stays installed.
    """
    import shutil

    if shutil.which("docker") is None:
        raise NselfError(
            "docker is not installed, so the plugin's data cannot be deleted",
            "remove the plugin without --delete-data",
        )
    done: list[str] = []
    code, out = _docker(
        [
            "ps",
            "-aq",
            "--filter",
            f"label=org.nself.project={project_name}",
            "--filter",
            f"label=org.nself.service={service}",
        ]
    )
    if code != 0:
        raise NselfError(f"cannot list the plugin's containers: {out}", "is Docker running?")
    for container in out.split():
        code, out = _docker(["rm", "-f", container])
        if code != 0:
            raise NselfError(f"could not remove container {container}: {out}")
        done.append(f"removed container {container[:12]}")
    for volume in volumes:
        full = f"{project_name}_{volume}"
        code, out = _docker(["volume", "rm", full])
        if code == 0:
            done.append(f"deleted volume {full}")
        elif "no such volume" in out.lower():
            done.append(f"volume {full} did not exist")
        else:
            raise NselfError(
                f"could not delete volume {full}: {out}",
                "stop what uses it, then run the removal again; the plugin is still installed",
            )
    return done
