"""The custom services of a project (its CS_N slots), as `nself service list` shows them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nself_builtins.shared.slots import slots
from nself_builtins.shared.urls import public_url
from nself_sdk import Config


def custom_services(project: Path, config: Config) -> list[dict[str, Any]]:
    """One row per slot: name, template, port, public URL (empty: internal), code."""
    return [
        {
            "slot": f"CS_{slot.number}",
            "name": slot.name,
            "template": config.text(slot.prefix + "TEMPLATE"),
            "port": slot.port,
            "subdomain": slot.subdomain,
            "url": public_url(config, slot.subdomain) if slot.subdomain else "",
            "build": slot.build,
            "image": slot.image,
            "code": bool(slot.build) and (project / slot.build).is_dir(),
        }
        for slot in slots(config)
    ]
