"""The stored licence key: set it (verified, asked online), describe it, the licence
server to ask. The work is done by ``nself_registry.licensing`` (imported when used)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def key_in_environment() -> bool:
    """The licence key variable is set (non-empty): it wins over the stored key."""
    from nself_registry import licensing

    return bool(os.environ.get(licensing.KEY_VAR))


def ping_url() -> str:
    """The licence server: env, else the current project's setting, else the default."""
    from nself_registry import licensing
    from nself_sdk import NselfError, find_project, load_config

    setting = None
    with contextlib.suppress(NselfError):  # outside a project: env or default
        setting = load_config(find_project()).text(licensing.PING_VAR) or None
    return licensing.ping_url(setting)


def set_key(key: str, warn: Callable[[str, str], None]) -> tuple[Any, Path]:
    """Verify ``key`` (``-``: read it from stdin), confirm it online when the server answers
    (``warn`` when it does not: it works offline for a while) and store it."""
    from nself_registry import licensing

    if key == "-":
        key = sys.stdin.readline().strip()
    lic = licensing.parse(key)
    licensing.check_time(lic, time.time())
    try:
        doc = licensing.ask(ping_url(), lic, timeout=5.0)
    except licensing.PingFailed as exc:
        doc = None
        warn(
            f"could not confirm the licence online ({exc})",
            f"it works offline for {licensing.GRACE // 86400} days; `nself license status` retries",
        )
    if doc is not None and doc["signed"]["status"] != "valid":
        raise licensing.LicenceError(
            f"licence {lic.lid} is {doc['signed']['status']} at the licence server: not stored",
            "contact whoever issued the licence",
        )
    path = licensing.store_key(lic)
    if doc is not None:
        state = licensing.load_state()
        state["answer"] = doc
        state["high_water"] = max(int(state.get("high_water", 0)), doc["signed"]["time"])
        licensing.save_state(state)
    return lic, path


def summary(refresh: bool) -> dict[str, Any] | None:
    """The licence (key masked), its entitlements, its last online check and what is wrong
    with it (``refresh``: ask the licence server now); ``None`` without a licence."""
    from nself_registry import licensing

    key = licensing.load_key()
    if key is None:
        return None
    lic = licensing.parse(key)
    now = time.time()
    purpose: licensing.Purpose = "install" if refresh else "use"  # install: ask now
    try:
        verdict = licensing.check(
            "", lic.tier, purpose, ping_url(), now=now, timeout=5.0, reuse_recent=False
        )
        problems = verdict.warnings
        checked = verdict.checked
    except licensing.LicenceError as exc:
        problems, checked = [exc.message], None
    found: dict[str, Any] = lic.summary()
    found["source"] = licensing.KEY_VAR if key_in_environment() else str(licensing.key_path())
    found["last_online_check"] = licensing.day(checked) if checked else "never"
    since = checked or float(licensing.load_state().get("set_at", now))
    found["offline_grace_until"] = licensing.day(since + licensing.GRACE)
    found["problems"] = problems
    found["state"] = "valid" if not problems else "degraded"
    return found
