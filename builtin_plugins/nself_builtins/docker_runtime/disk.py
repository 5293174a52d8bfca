"""The ``disk`` check of ``nself doctor``: room for data, backups, images and logs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from nself_sdk import Finding

GIB = 1024**3
# (share free, bytes free) under which a filesystem is an error / a warning.
ERROR = (0.05, 1 * GIB)
WARNING = (0.15, 5 * GIB)


def disk_findings(project: Path, runtime: Any) -> list[Finding]:
    places = {"the project": project}
    try:  # where the engine keeps images and volumes, when it runs on this machine
        root = runtime.client().info().get("DockerRootDir")
        if root and Path(root).is_dir():
            places["Docker's data"] = Path(root)
    except Exception:  # an engine elsewhere: its disk is not ours to measure
        pass
    by_device: dict[int, list[str]] = {}
    stats: dict[int, os.statvfs_result] = {}
    for what, path in places.items():
        device = path.stat().st_dev
        by_device.setdefault(device, []).append(what)
        stats[device] = os.statvfs(path)
    found = []
    for device, whats in by_device.items():
        st = stats[device]
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        share = free / total if total else 1.0
        text = f"{free / GIB:.1f} GiB free of {total / GIB:.0f} GiB ({share:.0%}) for " + (
            " and ".join(whats)
        )
        level: Literal["ok", "warning", "error"]
        if share < ERROR[0] or free < ERROR[1]:
            level = "error"
        elif share < WARNING[0] or free < WARNING[1]:
            level = "warning"
        else:
            level = "ok"
        hint = (
            None
            if level == "ok"
            else (
                "free space: old backups (`nself db backup prune`), PITR archive "
                "(`nself db pitr prune`), unused images (`docker image prune`)"
            )
        )
        found.append(Finding("disk", level, text, hint))
    return found
