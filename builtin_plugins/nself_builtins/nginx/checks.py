"""The ``nginx`` check of ``nself doctor``: ``nginx -t`` on the files on disk."""

from __future__ import annotations

from typing import Any

from nself_builtins.shared.nginx import is_running, tested


def configuration_findings(config: Any) -> list[Any]:
    from nself_sdk import Finding, NselfError, runtime

    try:
        rt = runtime(config)
        running = is_running(rt)
        if not running:
            from nself_builtins.shared.certificates import placeholders

            placeholders(config, rt)
        why = tested(rt, running)
    except NselfError as exc:
        return [Finding("nginx", "warning", f"not checked: {exc.message}", exc.hint)]
    if why is not None:
        return [
            Finding("nginx", "error", f"nginx -t fails: {why}", "fix it, then nself nginx reload")
        ]
    return [Finding("nginx", "ok", "nginx -t accepts the configuration on disk")]
