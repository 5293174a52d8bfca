"""The running nginx: test its configuration, reload it, notice when it is out of date.

Every check runs the service's own nginx binary on the files as the container sees them
(generated sites and hand-written ``conf.d``), so "valid" means valid for the version that
serves them. A reload is always tested first: an invalid configuration is refused and the
running nginx keeps serving the one it has.
"""

from __future__ import annotations

from typing import Any

SERVICE = "nginx"
CONF = "/etc/nginx/nself/nginx.conf"
PASSED = "nself-nginx-config-ok"
# nginx's start script (the nginx plugin writes it): `resolve` looks upstream names up.
RUN = "/etc/nginx/nself/nself-run.sh"


def is_running(rt: Any) -> bool:
    return any(s.name == SERVICE and s.running for s in rt.status())


def problems(output: str) -> list[str]:
    """nginx's own complaints (``[emerg] ... in FILE:LINE``), path shown as in the project."""
    lines = [line.strip() for line in output.splitlines()]
    found = [line for line in lines if "[emerg]" in line or "[crit]" in line]
    return [line.replace("/etc/nginx/nself/", "nginx/") for line in found or lines[-1:]]


def tested(rt: Any, running: bool) -> str | None:
    """Why nginx refuses the configuration on disk, or ``None`` when it is valid.

    Valid means nginx said so: the marker is printed only after ``nginx -t`` succeeded,
    so an exit status of 0 from a container that never ran does not count.
    """
    from nself_sdk import NselfError

    argv = ["sh", "-c", f"nginx -t -q -c {CONF} && echo {PASSED}"]
    result = rt.exec(SERVICE, argv) if running else rt.run(SERVICE, argv)
    text = result.stderr.decode("utf-8", "replace") + result.output
    if result.exit_code == 0:
        if PASSED in result.output:
            return None
        if "[emerg]" in text:  # nginx refused it; the exit status was lost on the way
            return "; ".join(problems(text))
        said = text.strip()
        raise NselfError(
            f"nginx -t did not run: {said.splitlines()[-1] if said else 'no output'}",
            "check the nginx image (NGINX_IMAGE) and `nself logs nginx`",
        )
    return "; ".join(problems(text)) or f"nginx -t exited with {result.exit_code}"


def workers(rt: Any) -> set[str]:
    """The running nginx's worker processes (the master's children)."""
    script = "cat /proc/$(cat /tmp/nginx.pid)/task/*/children"
    return set(rt.exec(SERVICE, ["sh", "-c", script]).output.split())


def test_then_reload(rt: Any, refusal: str, hint: str | None = None) -> None:
    """``nginx -t`` by the running nginx, then the reload; a refused configuration is an
    error (``refusal: why``) and the running nginx keeps serving what it has."""
    from nself_sdk import NselfError

    why = tested(rt, True)
    if why is not None:
        raise NselfError(f"{refusal}: {why}", hint)
    reload_running(rt)


def reload_running(rt: Any, wait: float = 10.0) -> None:
    """Signal the running nginx to reload, and wait until the workers of the old
    configuration are gone (they finish their requests first), so what answers next is
    the new configuration."""
    import time

    from nself_sdk import NselfError

    old = workers(rt)
    # Upstream servers' names are looked up by nginx's start script: resolve them now, so
    # the new configuration loads with their addresses rather than learning them later.
    rt.exec(SERVICE, ["sh", "-c", f"[ ! -f {RUN} ] || sh {RUN} resolve"])
    result = rt.exec(SERVICE, ["nginx", "-s", "reload", "-c", CONF])
    if result.exit_code != 0:
        why = "; ".join(problems(result.stderr.decode("utf-8", "replace") + result.output))
        raise NselfError(f"nginx did not reload: {why}", "see `nself logs nginx`")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        now = workers(rt)
        if now and not now & old:
            return
        time.sleep(0.1)


# Seconds since nginx's first worker started, i.e. since nginx (re)loaded its configuration
# (field 22 of /proc/PID/stat is the start in clock ticks after boot).
LOADED_AGO = (
    "w=$(cut -d' ' -f1 /proc/$(cat /tmp/nginx.pid)/task/*/children); "
    "hz=$(getconf CLK_TCK 2>/dev/null || echo 100); "
    'awk -v up="$(cut -d\' \' -f1 /proc/uptime)" -v hz="$hz" '
    "'{sub(/^.*\\) /, \"\"); print up - $20 / hz}' /proc/$w/stat"
)


def loaded_ago(rt: Any) -> float | None:
    result = rt.exec(SERVICE, ["sh", "-c", LOADED_AGO])
    try:
        return float(result.output.strip()) if result.exit_code == 0 else None
    except ValueError:
        return None


def apply_changes(config: Any, rt: Any) -> None:
    """Reload the running nginx when its files changed after its container started.

    The configuration folder is mounted, so Compose keeps the container when only files
    change, and nginx goes on serving what it loaded. An invalid new configuration is
    not loaded: nginx keeps the old one, and the warning says why.
    """
    import time

    from nself_sdk import NselfError
    from nself_sdk.console import info, warn

    try:
        state = next((s for s in rt.status() if s.name == SERVICE), None)
        if state is None or not state.running or state.uptime is None:
            return
        folder = config.project_dir / "nginx"
        files = [p for p in folder.rglob("*") if p.is_file()]
        newest = max((p.stat().st_mtime for p in files), default=0.0)
        if newest <= time.time() - min(state.uptime, loaded_ago(rt) or state.uptime):
            return
        why = tested(rt, True)
        if why is not None:
            warn(
                f"nginx keeps its previous configuration: the new one is invalid: {why}",
                "fix it, then `nself nginx reload`",
            )
            return
        reload_running(rt)
        info("nginx reloaded: its configuration changed since it started")
    except NselfError as exc:
        warn(f"nginx was not reloaded: {exc.message}", "nself nginx reload")
