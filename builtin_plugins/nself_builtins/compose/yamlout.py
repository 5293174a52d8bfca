"""A small, deterministic YAML writer for the compose document.

Importing PyYAML costs more than the rest of a build's rendering, so the compose file is
written here: block style, keys in insertion order, two-space indent. A string that YAML
could read as anything but that same string (a number, a boolean, null, or text with
``: ``/``#``/quotes/leading punctuation) is written as a JSON string, which is also a
YAML double-quoted scalar that reads back exactly. Tests load the output with PyYAML and
with the real ``docker compose config``.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Starts with a letter or "_", then characters that never start a YAML construct.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./@+=,-]*(:[A-Za-z0-9_./@+=,-]+)*")
# YAML 1.1 booleans and nulls (compared case-insensitively): quoted to stay strings.
_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def scalar(text: str) -> str:
    if _PLAIN.fullmatch(text) and text.lower() not in _WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def inline(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{}"  # only empty ones are written inline
    if isinstance(value, list | tuple):
        return "[]"
    return scalar(str(value))


def _nested(value: Any) -> bool:
    return isinstance(value, dict | list | tuple) and bool(value)


def _emit(value: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            name = scalar(str(key))
            if _nested(item):
                out.append(f"{pad}{name}:")
                _emit(item, indent + 2, out)
            else:
                out.append(f"{pad}{name}: {inline(item)}")
        return
    for item in value:
        if _nested(item):
            inner: list[str] = []
            _emit(item, indent + 2, inner)
            out.append(f"{pad}- {inner[0][indent + 2 :]}")
            out.extend(inner[1:])
        else:
            out.append(f"{pad}- {inline(item)}")


def dump(doc: dict[str, Any]) -> str:
    """``doc`` (dicts, lists, strings, numbers, booleans, None) as a YAML document."""
    out: list[str] = []
    _emit(doc, 0, out)
    return "\n".join(out) + "\n"
