"""A name in the plugin switches (``NSELF_DISABLE_PLUGINS``, ``NSELF_PLUGINS``) that no
plugin of the project has: a misspelt name would otherwise leave the plugin meant in (or
out) without a word. A warning, not an error: a variable set for every project may name a
bundle only some of them install."""

from __future__ import annotations

import os
from pathlib import Path

from nself_sdk.console import warn
from nself_sdk.host import entry_point_plugins

SWITCHES = ("NSELF_DISABLE_PLUGINS", "NSELF_PLUGINS")
_warned: set[tuple[str, str, Path]] = set()


def _names(var: str) -> list[str]:
    return sorted({n.strip() for n in os.environ.get(var, "").split(",") if n.strip()})


def warn_unknown(project_dir: Path, answers: list[list[object]]) -> None:
    """Warn, once per project and process, of each name in the switches that neither an
    installed plugin nor one of the project's own (``answers`` of ``load_extra_plugins``)
    has; an empty ``answers``: no plugin loads bundles, so a bundle's name is not known."""
    switches = [(var, name) for var in SWITCHES for name in _names(var)]
    if not switches:
        return
    known = {ep.name for ep in entry_point_plugins()}
    known |= {
        getattr(extra, "nself_name", None) or type(extra).__name__
        for answer in answers
        for extra in answer or ()
    }
    for var, name in switches:
        if name in known or (var, name, project_dir) in _warned:
            continue
        _warned.add((var, name, project_dir))
        from difflib import get_close_matches

        close = get_close_matches(name.lower(), sorted(known), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        hint += "names are those `nself plugin list --all` shows, separated by commas"
        if not answers:  # a bundle's name is not known then: it may be one
            hint += "; the switches leave out the plugin that loads bundles"
        warn(f"{var} names {name!r}, which is no plugin of this project", hint)
