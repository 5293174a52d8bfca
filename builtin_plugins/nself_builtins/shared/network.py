"""The stack's bridge network. The compose file calls it ``nself``, and Compose scopes it
to the project (``<PROJECT_NAME>_nself``), so two projects on one engine never share one:
``docker network inspect nself`` finds nothing, the real name does."""

from __future__ import annotations

KEY = "nself"


def network_name(project_name: str) -> str:
    """The network's name on the engine (Compose's ``<project>_<key>``)."""
    return f"{project_name}_{KEY}"


def network_line(project_name: str, where: str = "") -> str:
    """One line saying the network's real name and how to look at it."""
    name = network_name(project_name)
    on = f" (on {where})" if where else ""
    return f"network: {name}{on}, project-scoped; inspect it with `docker network inspect {name}`"
