"""Services stopped on purpose: `nself stop`, `nself admin stop` (``Runtime.stop``).

The engine cannot tell a container someone stopped from one the circuit breaker stopped
or one that died and was not restarted: all three are ``exited``. So the runtime notes
when it stops a service on request (``.nself/stopped``: service -> time), and forgets it
when the service is started again. A container counts as stopped on purpose while it is
not running and finished no later than that note: one started by hand since and then
crashed finished after it, and is a failure again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .engine import parse_started

FILE = ".nself/stopped"
# A container's FinishedAt comes from the engine's clock, the note from ours (same host).
SLACK = timedelta(seconds=2)


def _read(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write(folder: Path, notes: dict[str, str]) -> None:
    from nself_sdk import write_atomic

    path = folder / FILE
    if not notes:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(exist_ok=True)
    write_atomic(path, json.dumps(notes, indent=2, sort_keys=True) + "\n")


def note_stopped(folder: Path, names: Iterable[str]) -> None:
    """``names`` were stopped on request just now."""
    now = datetime.now(UTC).isoformat()
    _write(folder, {**_read(folder), **dict.fromkeys(names, now)})


def forget(folder: Path, names: Iterable[str] | None = None) -> None:
    """``names`` (None: every service) are started again, or gone."""
    notes = _read(folder)
    if not notes:
        return
    _write(folder, {} if names is None else {k: v for k, v in notes.items() if k not in names})


def on_purpose(folder: Path, containers: dict[str, Any]) -> set[str]:
    """The services whose container is not running because it was stopped on request."""
    found = set()
    for name, when in _read(folder).items():
        container = containers.get(name)
        if container is None:
            continue
        state = container.attrs.get("State") or {}
        if state.get("Running") or state.get("Restarting"):
            continue
        finished = parse_started(str(state.get("FinishedAt") or ""))
        try:
            noted = datetime.fromisoformat(when)
        except ValueError:
            continue
        if finished is not None and finished <= noted + SLACK:
            found.add(name)
    return found
