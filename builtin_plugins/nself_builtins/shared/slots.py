"""The custom services of a project as written in its settings: the CS_N slots.

The custom capability turns each slot into a container and a route; ``nself service list``
shows them. A slot exists when ``CS_N_NAME`` is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nself_sdk import Config

SLOT = re.compile(r"^CS_([1-9]\d*)_NAME$")


@dataclass(frozen=True)
class Slot:
    number: int
    name: str
    host: str
    image: str
    build: str
    port: int | None
    subdomain: str
    env: dict[str, str]
    health_path: str
    websocket: bool
    depends_on: tuple[str, ...]
    healthcheck: str = "wget"

    @property
    def prefix(self) -> str:
        return f"CS_{self.number}_"


def hostname(name: str) -> str:
    """Container names use '-' where env names use '_' (ping_api -> ping-api)."""
    return name.lower().replace("_", "-")


def slots(config: Config) -> list[Slot]:
    found: list[Slot] = []
    for key in config.names():
        match = SLOT.match(key)
        if not match:
            continue
        n = int(match.group(1))
        name = config.text(key)
        if not name:
            continue
        p = f"CS_{n}_"
        port_raw = config.text(p + "PORT")
        found.append(
            Slot(
                number=n,
                name=name,
                host=hostname(name),
                image=config.text(p + "IMAGE"),
                build=config.text(p + "BUILD"),
                port=config.int(p + "PORT", 0) or None if port_raw else None,
                subdomain=config.text(p + "SUBDOMAIN"),
                env=config.prefixed(p + "ENV_"),
                health_path=config.text(p + "HEALTH_PATH", "/health"),
                websocket=config.flag(p + "WEBSOCKET", False),
                depends_on=tuple(d for d in config.text(p + "DEPENDS_ON").split(",") if d),
                healthcheck=config.text(p + "HEALTHCHECK", "wget").lower(),
            )
        )
    return sorted(found, key=lambda s: s.number)
