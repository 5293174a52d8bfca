"""Replicas replaced one at a time: `start` after a change and `restart` never take all
replicas of a service down together, so its route keeps answering.

Everything else goes in the first stage, with one replica of each group; each later
stage takes the next replica, once the one before is healthy and nginx has had time to
learn its new address (two of its look-ups: until then nginx still sends to the old one,
so taking the next replica away sooner leaves the route short of two). nginx skips a
replica while it is away (passive health: the request goes to the next one). A replica that
fails stops the rollout of its group: the ones not replaced yet keep running as they
were, and the outcome says so.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nself_builtins.shared.service_replicas import RESOLVE_INTERVAL, rolling_stages
from nself_sdk import NselfError, UpResult
from nself_sdk import console as out

if TYPE_CHECKING:
    from nself_sdk import ProgressCallback

    from .project import Project


def up(
    project: Project,
    names: list[str],
    timeout: float,
    progress: ProgressCallback,
    restart: bool = False,
) -> UpResult:
    """Bring ``names`` up (restarting the running ones first when ``restart``), replicas
    one at a time. One ``Runtime.up`` when nothing needs rolling."""
    running = {s.name for s in project.runtime.status() if s.running}
    stages = rolling_stages(project.stack, names, running)
    deadline = time.monotonic() + timeout
    total = UpResult()
    stopped: set[str] = set()  # groups whose rollout stopped at a failed replica
    for index, stage in enumerate(stages):
        if index:
            kept = [n for n in stage if project.group(n) in stopped]
            for name in kept:
                out.warn(
                    f"{project.title(name)} was not replaced: a replica before it failed, "
                    "so it keeps running as it was",
                    "fix what the failed replica says, then run the command again",
                )
                total.started.append(name)
            stage = [n for n in stage if n not in kept]
            if not stage:
                continue
        if index:
            time.sleep(2 * RESOLVE_INTERVAL)  # nginx learns the previous replica's address
        left = deadline - time.monotonic()
        if left <= 0:
            raise NselfError(
                f"the rollout ran out of time before {', '.join(stage)}",
                "they keep running as they were; run the command again with a longer --timeout",
            )
        if restart:
            project.runtime.restart([n for n in stage if n in running])
        result = project.runtime.up(stage, wait=True, timeout=left, progress=progress)
        total.started += [n for n in result.started if n not in total.started]
        total.failed.update(result.failed)
        total.isolated += [n for n in result.isolated if n not in total.isolated]
        stopped |= {project.group(n) for n in result.failed} - {""}
        if result.failed and not result.degraded:
            break  # a core service failed: nothing more is started
    return total
