"""What the kernel prints: errors and ``--json`` answers, scrubbed of secret values and
coloured only on a terminal (plugins print through ``nself_sdk.console``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .redact import scrub, scrub_data


class State:
    """Global CLI options, set once per run by ``cli.main`` and the root callback."""

    debug = False
    project: Path | None = None
    emitted_json = False  # a --json answer is on stdout already (one per run)


state = State()

_COLORS = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "dim": "2", "bold": "1"}


def paint(text: str, color: str, stream: Any = None) -> str:
    stream = stream or sys.stdout
    if "NO_COLOR" in os.environ or not (hasattr(stream, "isatty") and stream.isatty()):
        return text
    return f"\033[{_COLORS[color]}m{text}\033[0m"


def error(message: str, hint: str | None = None) -> None:
    print(f"{paint('error:', 'red', sys.stderr)} {scrub(message)}", file=sys.stderr)
    if hint:
        print(f"{paint('hint:', 'dim', sys.stderr)} {scrub(hint)}", file=sys.stderr)


def emit_json(data: Any) -> None:
    data = json.loads(json.dumps(data, default=str))
    print(json.dumps(scrub_data(data), indent=2, sort_keys=True))
    state.emitted_json = True
