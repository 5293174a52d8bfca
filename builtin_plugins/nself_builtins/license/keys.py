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
    """Verify ``key`` (``-``: read it from stdin), ask the licence server and store it.

    Refused: a key that does not verify, a 4xx from the server, and a licence the server's
    latest signed answer (now, or kept from before) calls revoked, expired or rejected.
    When the server is down the key is stored with a warning: it works offline only within
    7 days of the server's last valid answer, and installs need one such answer.
    """
    from nself_registry import licensing

    if key == "-":
        key = sys.stdin.readline().strip()
    lic = licensing.parse(key)
    licensing.check_time(lic, time.time())
    state = licensing.load_state()
    try:
        doc = licensing.ask(ping_url(), lic, timeout=5.0)
    except licensing.PingRefused as exc:
        raise licensing.LicenceError(
            f"the licence server refused licence {lic.lid} ({exc}): not stored",
            "check the key, or contact whoever issued the licence",
        ) from None
    except licensing.PingFailed as exc:
        doc = None
        until = licensing.grace_until(state, lic.lid)
        if until is None:
            offline = "installs of pro plugins need the licence server to confirm it once"
        elif until < time.time():
            offline = f"its offline grace ended on {licensing.day(until)}: installs are refused"
        else:
            offline = f"it works offline until {licensing.day(until)}"
        warn(
            f"could not confirm the licence online ({exc})",
            f"{offline}; `nself license status --refresh` retries",
        )
    if doc is not None:
        licensing.record_answer(state, lic.lid, doc)
    answer = licensing.last_answer(state, lic.lid)
    if answer is not None and answer["status"] != "valid":
        if doc is not None:
            licensing.save_state(state)
        raise licensing.LicenceError(
            f"licence {lic.lid} is {answer['status']} at the licence server "
            f"(its answer of {licensing.day(answer['time'])}): not stored",
            "contact whoever issued the licence",
        )
    path = licensing.store_key(lic)
    if doc is not None:
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
    until = licensing.grace_until(licensing.load_state(), lic.lid)
    found["offline_grace_until"] = licensing.day(until) if until else "none (never confirmed)"
    found["problems"] = problems
    found["state"] = "valid" if not problems else "degraded"
    return found
