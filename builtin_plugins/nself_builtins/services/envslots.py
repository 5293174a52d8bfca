"""Reading and editing the CS_N slots in the project's env files, line by line.

Edits keep every other line (comments, order, quoting) exactly as the user wrote it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.parser import parse_stream

from nself_sdk.envfiles import SECRETS_FILES

# Every layer a slot can be set in, whatever the target environment.
ENV_FILES = (".env.dev", ".env.local", ".env.staging", ".env.prod", *SECRETS_FILES)
# Custom services are part of the project's code (services/NAME is committed), so their
# slots go to the committed team file that every environment layers on.
TARGET_FILE = ".env.dev"
KEY = re.compile(r"^CS_(\d+)_([A-Z0-9_]+)$")
MAX_SLOTS = 99


def marker(name: str) -> str:
    return f"# --- custom service {name} (nself service add) ---"


@dataclass
class DeclaredSlot:
    """A slot as written in the env files (raw values, later files win)."""

    number: int
    values: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.values.get("NAME", "")


def read(project: Path) -> dict[int, DeclaredSlot]:
    """Every slot any env file mentions, by number."""
    found: dict[int, DeclaredSlot] = {}
    for file in ENV_FILES:
        path = project / file
        if not path.is_file():
            continue
        for binding in parse_stream(io.StringIO(path.read_text(encoding="utf-8"))):
            match = KEY.match(binding.key or "")
            if not match:
                continue
            slot = found.setdefault(int(match.group(1)), DeclaredSlot(int(match.group(1))))
            slot.values[match.group(2)] = binding.value or ""
            if file not in slot.files:
                slot.files.append(file)
    return dict(sorted(found.items()))


def next_free(project: Path) -> int | None:
    """The lowest slot number no env file uses, or None when all are taken."""
    used = read(project)
    return next((n for n in range(1, MAX_SLOTS + 1) if n not in used), None)


def appended(text: str, name: str, number: int, values: list[tuple[str, str]]) -> str:
    """``text`` with a block of ``CS_<number>_*`` lines added at the end."""
    if text and not text.endswith("\n"):
        text += "\n"
    lines = ["", marker(name)] if text.strip() else [marker(name)]
    lines += [f"CS_{number}_{key}={value}" for key, value in values]
    return text + "\n".join(lines) + "\n"


def without(text: str, number: int, name: str) -> str:
    """``text`` without any ``CS_<number>_*`` line and without the slot's marker comment."""
    prefix = f"CS_{number}_"
    out: list[str] = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.key is not None and binding.key.startswith(prefix):
            continue
        chunk = binding.original.string
        if binding.key is None:
            kept = [line for line in chunk.splitlines(True) if line.rstrip("\n") != marker(name)]
            chunk = "".join(kept)
        out.append(chunk)
    result = "".join(out)
    # Removing a block leaves the blank line that separated it: fold runs of blank lines.
    result = re.sub(r"\n{3,}", "\n\n", result)
    return result.rstrip("\n") + "\n" if result.strip() else result
