"""The safety rules of the environments, in one place every command uses.

| Action            | local     | staging      | prod                     |
|-------------------|-----------|--------------|--------------------------|
| deploy            | freely    | freely       | confirm intent           |
| migrate (DB)      | freely    | with caution | approval required        |
| delete-data       | freely    | with caution | never without approval   |
| provision         | n/a       | confirm cost | confirm cost + plan      |
| admin (UI)        | enabled   | refused      | refused                  |

"With caution" prints a warning and goes ahead; "confirm"/"approval" needs the command's
``--confirm`` flag (or, on a terminal, an explicit answer); "refused" is never allowed.

Usage in a command::

    from nself_sdk import require_confirmation

    require_confirmation(config, "delete-data", confirm, detail="drops every table")
"""

from __future__ import annotations

import sys
from typing import Literal

from nself.errors import NselfError

from .config import Config
from .console import warn
from .exitcodes import EXIT_NOT_CONFIRMED

Action = Literal["deploy", "migrate", "delete-data", "provision", "admin"]
Rule = Literal["free", "caution", "confirm", "refuse"]

POLICY: dict[str, dict[str, Rule]] = {
    "deploy": {"dev": "free", "staging": "free", "prod": "confirm"},
    "migrate": {"dev": "free", "staging": "caution", "prod": "confirm"},
    "delete-data": {"dev": "free", "staging": "caution", "prod": "confirm"},
    "provision": {"dev": "free", "staging": "confirm", "prod": "confirm"},
    "admin": {"dev": "free", "staging": "refuse", "prod": "refuse"},
}
_WORDS = {
    "deploy": "deploying",
    "migrate": "changing the database schema",
    "delete-data": "deleting data",
    "provision": "provisioning servers (this costs money)",
    "admin": "the admin UI",
}


class NotConfirmed(NselfError):
    """A confirmation the command needs was not given, or the answer was no; nothing was
    changed (exit code 4). The hint says which flag confirms it."""

    exit_code = EXIT_NOT_CONFIRMED


def rule(env: str, action: Action) -> Rule:
    """What the safety table says about ``action`` in ``env`` (dev, staging or prod)."""
    try:
        return POLICY[action][env]
    except KeyError:
        raise NselfError(f"unknown safety action {action!r} or environment {env!r}") from None


def require_confirmation(
    config: Config | str,
    action: Action,
    confirmed: bool,
    *,
    detail: str = "",
    flag: str = "--confirm",
    interactive: bool | None = None,
) -> None:
    """Enforce the safety table for ``action`` on ``config``'s target environment.

    Returns when the action may go ahead; raises ``NotConfirmed`` (exit 4, nothing done)
    when it needs a confirmation that was not given or the answer was no, and
    ``NselfError`` (exit 1) when it is never allowed there. With
    ``interactive`` (default: stdin and stdout are terminals) a missing ``flag`` is asked
    for instead: a yes, or for deleting data in prod, the project name typed back.
    """
    env = config if isinstance(config, str) else config.env
    verdict = rule(env, action)
    what = _WORDS[action] + (f" ({detail})" if detail else "")
    if verdict == "free":
        return
    if verdict == "refuse":
        raise NselfError(
            f"{what} is not allowed in {env}",
            "the admin UI is a local development tool; use `nself env switch local`",
        )
    if verdict == "caution":
        warn(f"{what} in {env}: take care, this environment is shared")
        return
    if confirmed:
        warn(f"{what} in {env}: confirmed with {flag}")
        return
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        import typer

        if action == "delete-data" and not isinstance(config, str):
            typed = typer.prompt(
                f"{what} in {env} cannot be undone. Type the project name "
                f"({config.project_name}) to go ahead",
                default="",
                show_default=False,
            )
            if typed.strip() == config.project_name:
                return
        elif typer.confirm(f"{what} in {env}: go ahead?", default=False):
            return
        raise NotConfirmed("cancelled: nothing was changed", f"{flag} confirms it")
    raise NotConfirmed(
        f"{what} in {env} needs explicit confirmation",
        f"rerun with {flag} once you are sure (safety rules: docs/environments.md)",
    )


def require_yes(
    question: str,
    given: bool,
    *,
    needs: str,
    flag: str = "--yes",
    hint: str = "",
    interactive: bool | None = None,
) -> None:
    """Go ahead when ``flag`` was ``given``, or on a terminal when the answer to
    ``question`` is yes; otherwise raise ``NotConfirmed`` (exit 4, nothing done). ``needs``
    is the error without a terminal ("resetting the database needs confirmation"),
    ``hint`` what to do (default: rerun with ``flag``)."""
    if given:
        return
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not interactive:
        raise NotConfirmed(needs, hint or f"rerun with {flag} once you are sure")
    import typer

    if typer.confirm(question, default=False):
        return
    raise NotConfirmed("cancelled: nothing was changed", f"{flag} confirms it")
