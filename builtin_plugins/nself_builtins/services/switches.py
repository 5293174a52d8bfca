"""Templates that switch on a part of the stack instead of scaffolding code.

``nself service add redis-sentinel --template redis-sentinel`` gives the stack's Redis a
replica and three sentinels: those are the redis capability's own services (the same
image, its settings, its health checks), so the template only writes the settings that
switch them on into ``.env.dev``, plans the stack with them and puts the file back when
a plugin refuses. ``nself service remove redis-sentinel`` switches it off again.
"""

from __future__ import annotations

import io
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from nself_sdk import NselfError, UsageError, plan, write_atomic

from . import envslots


@dataclass(frozen=True)
class Switch:
    name: str
    description: str
    on: tuple[tuple[str, str], ...]
    off: tuple[tuple[str, str], ...]
    said: tuple[str, ...]


SWITCHES = {
    "redis-sentinel": Switch(
        "redis-sentinel",
        "The stack's Redis with a replica and three sentinels that promote it on failure",
        on=(("REDIS_ENABLED", "true"), ("REDIS_SENTINEL_ENABLED", "true")),
        off=(("REDIS_SENTINEL_ENABLED", "false"),),
        said=(
            "services: redis (master), redis-replica, redis-sentinel x3 (quorum 2)",
            "clients find the master by asking a sentinel: REDIS_SENTINELS (HOST:PORT list) "
            "and REDIS_SENTINEL_MASTER, with REDIS_PASSWORD for sentinels and nodes",
        ),
    )
}


def with_values(text: str, values: tuple[tuple[str, str], ...]) -> str:
    """``text`` with each ``KEY=value`` set: an existing line of the key is rewritten in
    place (the last one, which wins), a missing key is appended."""
    from dotenv.parser import parse_stream

    chunks = [(b.key, b.original.string) for b in parse_stream(io.StringIO(text))]
    for key, value in values:
        last = max((i for i, (k, _c) in enumerate(chunks) if k == key), default=None)
        if last is None:
            if chunks and not chunks[-1][1].endswith("\n"):
                chunks[-1] = (chunks[-1][0], chunks[-1][1] + "\n")
            chunks.append((key, f"{key}={value}\n"))
            continue
        old = chunks[last][1]
        ending = old[len(old.rstrip("\n")) :]
        kept = re.match(r"\s*(export\s+)?", old)
        lead = kept.group(0) if kept else ""
        chunks[last] = (key, f"{lead}{key}={value}{ending}")
    return "".join(chunk for _k, chunk in chunks)


def apply(project: Path, switch: Switch, values: tuple[tuple[str, str], ...]) -> Path:
    path = project / envslots.TARGET_FILE
    original = path.read_text(encoding="utf-8")
    mode = stat.S_IMODE(path.stat().st_mode)
    write_atomic(path, with_values(original, values), mode)
    try:
        config = plan(project, "dev").config
        for key, value in values:
            if config.text(key) != value:  # a later layer says otherwise
                raise NselfError(
                    f"{config.where(key)}: {key}={config.text(key)} overrides {key}={value}",
                    f"delete that line, or set {key}={value} there",
                )
    except BaseException as exc:
        write_atomic(path, original, mode)
        if isinstance(exc, NselfError):
            raise NselfError(
                f"the stack would not build with {switch.name}: {exc.message}",
                exc.hint or "nothing was changed",
            ) from exc
        raise
    return path


def add(project: Path, name: str, template: str) -> Switch:
    switch = SWITCHES[template]
    if name != switch.name:
        raise UsageError(
            f"template {template} adds the services of {switch.name}; it takes no other name",
            f"run: nself service add {switch.name} --template {template}",
        )
    config = plan(project, "dev").config
    if all(config.text(key) == value for key, value in switch.on):
        raise NselfError(
            f"{switch.name} is already part of the stack",
            f"remove it with `nself service remove {switch.name}`",
        )
    apply(project, switch, switch.on)
    return switch


def remove(project: Path, name: str) -> Switch:
    switch = SWITCHES[name]
    config = plan(project, "dev").config
    if not all(config.text(key) == value for key, value in switch.on):
        raise NselfError(f"{name} is not part of the stack", f"add it: nself service add "
                         f"{name} --template {name}")  # fmt: skip
    apply(project, switch, switch.off)
    return switch
