"""A server's containers as Compose lists them, joined with what the engine says of each.

Compose's ``ps --format json`` prints ids cut to 12 characters since v2.21 (it formats
its list as the docker CLI does; earlier versions printed them whole, in one array), while
``docker inspect`` prints all 64: a row is matched to the engine's line whose id starts
with the row's.
"""

from __future__ import annotations

import json
from typing import Any

SHORT_ID = 12  # the characters of an id Compose prints


def rows(text: str) -> list[dict[str, Any]]:
    """Compose's ``ps --format json``: one array, or one object per line (by version)."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        found = json.loads(text)
    else:
        found = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [row for row in found if isinstance(row, dict)]


def inspected(text: str, fields: int) -> dict[str, list[str]]:
    """``docker inspect -f '{{.Id}} ...'`` lines of ``fields`` words, by full id."""
    lines = (line.split() for line in text.splitlines())
    return {parts[0]: parts[1:] for parts in lines if len(parts) == fields}


def full_id(row: dict[str, Any], ids: dict[str, list[str]]) -> str:
    """The engine's id of the container a Compose row lists ("" if the engine has none).

    An id shorter than Compose's 12 characters, or one two of the engine's ids start with,
    names no container: it must never be taken for another one (or for all of them)."""
    short = str(row.get("ID", "")).strip()
    if len(short) < SHORT_ID:
        return ""
    found = [known for known in ids if known.startswith(short)]
    return found[0] if len(found) == 1 else ""
