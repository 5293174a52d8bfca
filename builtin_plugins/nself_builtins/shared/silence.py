"""Why a service has no logs to show: its container never ran (`nself logs`, `nself plugin
logs`), so an empty answer is never all the user gets."""

from __future__ import annotations

from typing import Any


def no_logs_reason(runtime: Any, service: str) -> str | None:
    """What the engine knows about ``service``'s container when it has printed nothing:
    created but never started (and the engine's own message), or None when it ran."""
    states = {s.name: s for s in runtime.status()}
    state = states.get(service)
    if state is None or state.state == "running":
        return None
    said = f": {state.error}" if state.error else ""
    if state.state == "created":
        return f"its container was created but never started{said}"
    if state.state == "missing":
        return f"it has no container yet (nself start {service})"
    return f"its container is {state.state}{said}" if said else None
