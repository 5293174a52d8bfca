"""ACME certificates of a running stack, driven from the CLI: status, renew, revoke.

The work happens in the stack's ``acme`` service (``renewer.py``), where the account key
and certificates live, locally or on the environment's server alike; this module runs
its commands through the runtime and loads what they renewed into nginx (tested first).

``renew_certificates(config)`` is the one call for "obtain or renew this project's
certificates now" (``nself ssl renew``, ``nself install``).
"""

from __future__ import annotations

import json
from typing import Any

from nself_sdk import Config, NselfError

from .tls import ACME_SERVICE, ssl_mode

RENEWER = ("python3", "/nself/renewer.py")


def _running(rt: Any, config: Config, *services: str) -> None:
    states = {s.name: s for s in rt.status()}
    for name in services:
        state = states.get(name)
        if state is None or not state.running:
            remote = not config.is_local and config.text("DEPLOY_HOST").strip()
            raise NselfError(
                f"the {name} service of {config.env} is not running",
                f"deploy it: nself deploy {config.env}"
                if remote
                else "start the stack: nself start"
                + ("" if config.is_local else f" --env {config.env}")
                + " (certificates are obtained through it)",
            )


def renewer(config: Config) -> Any:
    """The runtime of ``config``'s stack, once its renewer is known to run."""
    from nself_sdk import runtime

    if ssl_mode(config) != "acme":
        raise NselfError(
            f"{config.env} does not use ACME certificates (SSL_MODE={config.text('SSL_MODE')})",
            "set SSL_MODE=acme (or auto outside dev), without SSL_CERTIFICATE_FILE",
        )
    rt = runtime(config)
    _running(rt, config, ACME_SERVICE)
    return rt


def ask(rt: Any, *args: str) -> Any:
    """Run one renewer command in the running service; its JSON answer."""
    done = rt.exec(ACME_SERVICE, [*RENEWER, *args])
    try:
        answer = json.loads(done.output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        said = (done.stderr.decode("utf-8", "replace") + done.output).strip().splitlines()
        raise NselfError(
            f"the certificate renewer did not answer: {said[-1] if said else 'no output'}",
            "see `nself logs acme`",
        ) from None
    if isinstance(answer, dict) and "error" in answer:
        raise NselfError(answer["error"], "see `nself ssl status` and `nself logs acme`")
    return answer


def certificate_status(config: Config) -> list[dict[str, Any]]:
    """Every certificate the stack needs: names, issuer, expiry, renewal state."""
    result: list[dict[str, Any]] = ask(renewer(config), "status")
    return result


def renew_certificates(
    config: Config, *, force: bool = False, dry_run: bool = False, only: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Obtain or renew ``config``'s certificates now, through the running stack.

    Each result has ``name``, ``names``, ``action`` (renewed, not-due, waiting, failed,
    dry-run-ok), ``reason`` and, when it failed or waits, ``error`` and ``until``. New
    certificates are loaded into nginx (``nginx -t`` first; a failed test keeps the
    loaded ones and raises). Failures are in the results, not raised.
    """
    rt = renewer(config)
    if not config.text("ACME_DNS_HOOK"):
        _running(rt, config, "nginx")  # HTTP-01 is answered by nginx
    args = ["renew", *(["--force"] if force else []), *(["--dry-run"] if dry_run else [])]
    for name in only:
        args += ["--only", name]
    results: list[dict[str, Any]] = ask(rt, *args)
    # The service's own pass may have installed certificates while this one waited for
    # its lock: nginx's watcher loads them within seconds, but this call returns with
    # them loaded.
    if any(r.get("action") == "renewed" for r in results) or (not dry_run and _behind(rt)):
        reload_nginx(rt)
    return results


# Seconds since the renewer last installed certificates (the `generation` file it bumps),
# measured in the stack (on the server too, whatever this machine's clock says).
GENERATION_AGE = (
    "import time; print(time.time() - int(open('/etc/letsencrypt/generation').read()) / 1e9)"
)


def _behind(rt: Any) -> bool:
    """Whether the running nginx loaded its configuration before the renewer's last
    install."""
    from .nginx import is_running, loaded_ago

    if not is_running(rt):
        return False
    done = rt.exec(ACME_SERVICE, ["python3", "-c", GENERATION_AGE])
    try:
        age = float(done.output.strip())
    except ValueError:
        return False
    loaded = loaded_ago(rt)
    return loaded is not None and age < loaded


def placeholders(config: Config, rt: Any) -> None:
    """Before the stack's first start, the certificates nginx's configuration names do not
    exist yet: the renewer's placeholders for them, as the first start makes first (so a
    throw-away ``nginx -t`` tests the configuration, not an empty volume)."""
    if ssl_mode(config) != "acme":
        return
    done = rt.run(ACME_SERVICE, ["prepare"])
    if done.exit_code != 0:
        said = (done.stderr.decode("utf-8", "replace") + done.output).strip().splitlines()
        raise NselfError(
            f"the certificate renewer could not make placeholders: {said[-1] if said else ''}",
            "see `nself logs acme`",
        )


def revoke_certificate(config: Config, name: str) -> dict[str, Any]:
    result: dict[str, Any] = ask(renewer(config), "revoke", name)
    return result


def reload_nginx(rt: Any) -> None:
    from .nginx import is_running, test_then_reload

    if not is_running(rt):
        return
    test_then_reload(
        rt,
        "nginx keeps its loaded certificates: the new ones fail nginx -t",
        "see `nself nginx test`",
    )
