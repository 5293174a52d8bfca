"""Terminal output shared by every command: plain, coloured only on a terminal."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .redact import scrub, scrub_data


class State:
    """Global CLI options, set once by the root callback."""

    def __init__(self, debug: bool = False, project: Path | None = None) -> None:
        self.debug = debug
        self.project = project
        self.emitted_json = False  # a --json answer is on stdout already (one per run)


state = State()

_COLORS = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "dim": "2", "bold": "1"}


def _color_ok(stream: Any) -> bool:
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def paint(text: str, color: str, stream: Any = None) -> str:
    if not _color_ok(stream or sys.stdout):
        return text
    return f"\033[{_COLORS[color]}m{text}\033[0m"


# Everything below scrubs known secret values and URL passwords (see redact.py).
def info(message: str = "") -> None:
    print(scrub(message))


def ok(message: str) -> None:
    print(f"{paint('✓', 'green')} {scrub(message)}")


def warn(message: str, hint: str | None = None) -> None:
    print(f"{paint('warning:', 'yellow', sys.stderr)} {scrub(message)}", file=sys.stderr)
    if hint:
        print(f"  {paint('hint:', 'dim', sys.stderr)} {scrub(hint)}", file=sys.stderr)


def error(message: str, hint: str | None = None) -> None:
    print(f"{paint('error:', 'red', sys.stderr)} {scrub(message)}", file=sys.stderr)
    if hint:
        print(f"{paint('hint:', 'dim', sys.stderr)} {scrub(hint)}", file=sys.stderr)


def emit_json(data: Any) -> None:
    data = json.loads(json.dumps(data, default=str))
    print(json.dumps(scrub_data(data), indent=2, sort_keys=True))
    state.emitted_json = True
