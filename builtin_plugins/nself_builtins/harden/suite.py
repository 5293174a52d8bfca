"""Running the hardening suite: every plugin's ``harden`` checks, grouped by layer.

The suite knows no check itself: each capability reports on what it owns (secrets, Hasura's
permissions, the firewall, backups...) through the ``harden`` hook, and this module asks
them, orders the answers by layer and applies the safe fixes on request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nself_sdk import Config, Finding, NselfError, Stack

LAYERS = ("network", "authentication", "authorization", "data", "audit")
TITLES = {
    "network": "Network",
    "authentication": "Authentication",
    "authorization": "Authorization",
    "data": "Data",
    "audit": "Audit",
}
ORDER = {"error": 0, "warning": 1, "ok": 2}

# Set while `nself harden` (or install) runs the suite itself: the builds it makes on the
# way (a secret rotation rebuilds) must not run it once more inside their validation.
_running = {"depth": 0}


@contextmanager
def running() -> Iterator[None]:
    _running["depth"] += 1
    try:
        yield
    finally:
        _running["depth"] -= 1


def is_running() -> bool:
    return _running["depth"] > 0


@dataclass(frozen=True)
class Item:
    plugin: str
    finding: Finding

    @property
    def layer(self) -> str:
        return self.finding.layer

    def as_dict(self) -> dict[str, Any]:
        f = self.finding
        return {
            "layer": f.layer,
            "check": f.check,
            "level": f.level,
            "message": f.message,
            "hint": f.hint,
            "plugin": self.plugin,
            "fixable": f.fix is not None and f.level != "ok",
        }


@dataclass
class Report:
    env: str
    live: bool
    items: list[Item] = field(default_factory=list)

    def count(self, level: str) -> int:
        return sum(i.finding.level == level for i in self.items)

    @property
    def ok(self) -> bool:
        return self.count("error") == 0

    def fixable(self) -> list[Item]:
        return [i for i in self.items if i.finding.level != "ok" and i.finding.fix is not None]

    def by_layer(self) -> dict[str, list[Item]]:
        return {layer: [i for i in self.items if i.layer == layer] for layer in LAYERS}


def run(pm: Any, config: Config, stack: Stack, live: bool) -> Report:
    """Ask every plugin for its checks (one pluggy call, wrappers included)."""
    report = Report(config.env, live)
    try:
        answers = pm.answers("harden", config=config, stack=stack, live=live)
    except NselfError as exc:  # a plugin broke the hook's contract: the suite is incomplete
        answers = [
            (
                "harden",
                [
                    Finding(
                        "checks",
                        "error",
                        f"the hardening checks could not run: {exc.message}",
                        exc.hint,
                        layer="audit",
                    )
                ],
            )
        ]
    for plugin, answer in answers:
        for finding in answer or ():
            if finding.layer not in LAYERS:
                finding = Finding(
                    finding.check,
                    "warning",
                    f"plugin {plugin} reported {finding.check!r} without a known "
                    f"layer ({finding.layer!r}): {finding.message}",
                    "a hardening finding's layer is one of " + ", ".join(LAYERS),
                    layer="audit",
                )
            report.items.append(Item(plugin, finding))
    report.items.sort(
        key=lambda i: (LAYERS.index(i.layer), ORDER[i.finding.level], i.finding.check)
    )
    return report


@dataclass
class Applied:
    item: Item
    done: str = ""
    failed: str = ""


def apply_fixes(report: Report) -> list[Applied]:
    """Apply the fix of every finding that is not ok and has one, in report order."""
    applied = []
    for item in report.fixable():
        fix = item.finding.fix
        assert fix is not None
        try:
            applied.append(Applied(item, done=fix()))
        except NselfError as exc:
            applied.append(
                Applied(item, failed=exc.message + (f" ({exc.hint})" if exc.hint else ""))
            )
        except Exception as exc:  # a plugin's fix that broke: said, the others still run
            applied.append(Applied(item, failed=f"{type(exc).__name__}: {exc}"))
    return applied
