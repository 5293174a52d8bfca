"""The custom services of a project (its CS_N slots), as `nself service list` shows them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nself_builtins.shared.service_replicas import count
from nself_builtins.shared.slots import slots
from nself_sdk import Config, NselfError, public_urls, stack


def custom_services(project: Path, config: Config) -> list[dict[str, Any]]:
    """One row per slot: name, template, port, public URL (empty: internal; None: unknown,
    the stack does not build), code. The URLs are the stack's (``contribute_urls``)."""
    try:
        urls: dict[str, str] | None = public_urls(config, stack(config))
    except NselfError:  # a stack that does not build still has its slots to list
        urls = None
    return [
        {
            "slot": f"CS_{slot.number}",
            "name": slot.name,
            "template": config.text(slot.prefix + "TEMPLATE"),
            "port": slot.port,
            "subdomain": slot.subdomain,
            "url": (urls.get(slot.host, "") if urls is not None else None)
            if slot.subdomain
            else "",
            "build": slot.build,
            "image": slot.image,
            "code": bool(slot.build) and (project / slot.build).is_dir(),
            "replicas": count(config, slot.prefix + "REPLICAS"),
        }
        for slot in slots(config)
    ]
