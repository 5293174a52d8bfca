"""Warnings for names in the env files that no plugin reads but one nearly does.

Only reached when some name is neither declared nor derived, so an ordinary build pays
nothing for it. A user's own variables (used through ``${NAME}``, or far from every
declared name) are never flagged: only likely typos, another product's name for a setting
(``wrong_names``) and an ``X_ENABLED`` switch where the ``X_*`` settings have none.
"""

from __future__ import annotations

import re

from nself_sdk import Config, Problem
from nself_sdk.model import plugin_setting

REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
NUMBER = re.compile(r"\d+")
# difflib ratio from which a name counts as a typo of a declared one: one wrong, missing,
# extra or swapped letter in names of 8+ characters; REDIS_PASSWORD_FILE (0.85 to
# REDIS_PASSWORD) stays below, and extensions of a declared name are skipped anyway.
CUTOFF = 0.86
SWITCH = "_ENABLED"


def _family(template: str) -> str:
    """``CS_<N>_ENV_<NAME>`` -> a regular expression for every name of the family."""
    pattern = re.escape(template).replace("<N>", r"\d+")
    return pattern.replace("<NAME>", r"[A-Za-z0-9_]+")


def unknown_setting_warnings(config: Config, unknown: list[str]) -> list[Problem]:
    """A warning for each name in ``unknown`` that looks like a mistake for a declared one."""
    declared = config.declared
    plain = [n for n in declared if "<" not in n]
    templates = [n for n in declared if "<" in n]
    family = re.compile("|".join(_family(t) for t in templates)) if templates else None
    wrong = {w: s.name for s in declared.values() for w in plugin_setting(s).wrong_names}
    history = config.resolver.history
    used = {
        ref
        for chain in history.values()
        for entry in chain
        if not entry.literal and "${" in entry.raw
        for ref in REF.findall(entry.raw)
    }
    problems = []
    for name in unknown:
        if name in used or (family is not None and family.fullmatch(name)):
            continue  # a user's own variable, or one of a declared family (CS_<N>_...)
        where = history[name][-1].where
        meant = wrong.get(name) or (name.upper() if name.upper() in declared else None)
        if meant is None:
            if any(name.startswith(d + "_") or name.endswith("_" + d) for d in plain):
                continue  # built on a declared name (REDIS_PASSWORD_FILE): someone's own
            number = NUMBER.search(name)
            candidates = plain + [
                t.replace("<N>", number.group()) for t in templates if number and "<NAME>" not in t
            ]
            import difflib

            close = difflib.get_close_matches(name.upper(), candidates, n=1, cutoff=CUTOFF)
            meant = close[0] if close else None
        if meant is not None:
            problems.append(
                Problem(
                    "warning",
                    f"{where}: unknown setting {name} — did you mean {meant}?",
                    f"no plugin reads {name}, so it changes nothing: rename it to {meant}",
                )
            )
        elif name.endswith(SWITCH) and any(d.startswith(name[: -len(SWITCH)] + "_") for d in plain):
            prefix = name[: -len(SWITCH)]
            problems.append(
                Problem(
                    "warning",
                    f"{where}: unknown setting {name} — no plugin reads it, "
                    f"so it switches nothing ({prefix}_* has no on/off switch)",
                    "remove it; docs/reference/env.md lists every setting",
                )
            )
    return problems
