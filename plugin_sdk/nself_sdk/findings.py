"""What one check of ``nself doctor`` or ``nself harden`` found: the answers of the
``diagnose`` and ``harden`` hooks (the kernel never reads them: the doctor and harden
plugins do)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from nself.model import Shown


@dataclass(frozen=True, repr=False)
class Finding(Shown):
    """The outcome of one check of ``nself doctor`` (a ``diagnose`` hook answer)."""

    check: str  # short name, selectable with `nself doctor --check NAME`
    level: Literal["ok", "warning", "error"]
    message: str
    hint: str | None = None
    # The hardening suite's layer (``harden`` hook): network, authentication,
    # authorization, data or audit.
    layer: str = ""
    # A safe fix ``nself harden --fix`` may apply: makes the change, returns what it changed.
    fix: Callable[[], str] | None = None
