"""Live per-service progress of `nself start`: a table on a terminal, lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from nself_sdk import Progress
from nself_sdk import console as out

DONE = {"healthy", "running"}
BAD = {"failed", "isolated"}
WORDS = {
    "pulling": "pulling image",
    "pulled": "image ready",
    "building": "building image",
    "creating": "creating",
    "recreating": "replacing its old container",
    "starting": "starting",
    "waiting": "waiting until healthy",
    "healthy": "healthy",
    "running": "running",
    "failed": "failed",
    "isolated": "isolated",
}


class ProgressView:
    """The progress callback for ``Runtime.up``; use it as a context manager."""

    def __init__(self, title: Callable[[str], str], live: bool | None = None) -> None:
        self.title = title
        self.live = sys.stdout.isatty() if live is None else live
        self.began = time.monotonic()
        self.rows: dict[str, tuple[str, str, float]] = {}
        self._lock = threading.Lock()
        self._display: Any = None

    def __enter__(self) -> ProgressView:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._display = Live(
                console=Console(),
                refresh_per_second=4,
                transient=False,
                get_renderable=self._table,
            )
            self._display.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._display is not None:
            self._display.refresh()
            self._display.__exit__(kind, exc, tb)

    def __call__(self, event: Progress) -> None:
        with self._lock:
            elapsed = time.monotonic() - self.began
            previous = self.rows.get(event.service)
            if previous is not None and previous[0] == event.phase and previous[1] == event.detail:
                return
            self.rows[event.service] = (event.phase, event.detail, elapsed)
            if self._display is None:
                self._line(event, elapsed)

    def _line(self, event: Progress, elapsed: float) -> None:
        name = self.title(event.service)
        word = WORDS.get(event.phase, event.phase)
        if event.phase in DONE:
            out.info(f"{out.paint('✓', 'green')} {name} {word} ({elapsed:.1f}s)")
        elif event.phase in BAD:
            out.info(f"{out.paint('✗', 'red')} {name} {word}: {event.detail}")
        else:
            detail = f" ({event.detail})" if event.detail else ""
            out.info(f"  {name} {word}{detail}")
        sys.stdout.flush()

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(box=None, show_header=False, pad_edge=False)
        now = time.monotonic() - self.began
        for service, (phase, detail, at) in sorted(self.rows.items()):
            if phase in DONE:
                mark, style, when = "✓", "green", f"{at:.1f}s"
            elif phase in BAD:
                mark, style, when = "✗", "red", ""
            else:
                mark, style, when = "…", "yellow", f"{now:.0f}s"
            text = WORDS.get(phase, phase) + (f": {detail}" if detail else "")
            table.add_row(f"[{style}]{mark}[/]", self.title(service), text, when)
        return table
