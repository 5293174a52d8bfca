"""A removed plugin's data: named volumes (and tables, which stay until dropped by hand)."""

from __future__ import annotations

from pathlib import Path

from nself_sdk import NselfError


def data_summary(project: Path, name: str) -> str:
    """What data the installed plugin ``name`` has: volumes and table prefix."""
    from nself_sdk.manifest import load_bundle

    from .bundle import volume_name
    from .store import PLUGINS_DIR

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
        parts.append(f"tables {manifest.database.table_prefix}*")
    return "; ".join(parts)


def plugin_volumes(project: Path, name: str) -> list[str]:
    from nself_sdk.manifest import load_bundle

    from .bundle import volume_name
    from .store import PLUGINS_DIR

    manifest = load_bundle(project / PLUGINS_DIR / name).manifest
    if manifest.service is None:
        return []
    return [volume_name(name, k) for k in sorted(manifest.service.volumes)]


def delete_volumes(project_name: str, volumes: list[str]) -> list[str]:
    """Delete the plugin's named volumes of this project (Compose names them PROJECT_VOLUME)."""
    import shutil
    import subprocess

    if not volumes:
        return []
    if shutil.which("docker") is None:
        raise NselfError("docker is not installed, so the plugin's volumes cannot be deleted")
    done = []
    for volume in volumes:
        full = f"{project_name}_{volume}"
        result = subprocess.run(
            ["docker", "volume", "rm", full], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            done.append(f"deleted volume {full}")
        elif "no such volume" in result.stderr.lower():
            done.append(f"volume {full} did not exist")
        else:
            raise NselfError(
                f"could not delete volume {full}: {result.stderr.strip()}",
                "stop the stack first (`nself stop`), then run the removal again",
            )
    return done
