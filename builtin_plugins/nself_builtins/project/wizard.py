"""``nself init`` as the command runs it: the wizard's questions, the files, the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nself_sdk import TRUE, UsageError
from nself_sdk.console import error, info, ok
from nself_sdk.host import plugin_manager

from .names import DEFAULT_DOMAIN, NAME, check_domain, check_name, slug
from .scaffold import InitResult, check_target, current, init, optional_switches


def _ask(question: str, default: str | None, check: Callable[[str], str]) -> str:
    """Ask until ``check`` accepts the answer; the end of input gives up, writing nothing."""
    import click

    while True:
        try:
            answer: str = click.prompt(question, default=default)
        except click.exceptions.Abort:
            raise _no_answer(question) from None
        try:
            return check(answer.strip())
        except UsageError as exc:
            error(exc.message, exc.hint)


def _confirm(question: str, short: str, default: bool = False) -> bool:
    import click

    try:
        return bool(click.confirm(question, default=default))
    except click.exceptions.Abort:
        raise _no_answer(short) from None


def _no_answer(question: str) -> UsageError:
    return UsageError(
        f"the wizard got no answer for {question} (end of input): nothing was written",
        "answer every question, or run `nself init --name NAME --domain DOMAIN` instead",
    )


def run_init(
    folder: Path, name: str | None, domain: str | None, wizard: bool, force: bool
) -> InitResult:
    """``nself init`` as the command runs it: the wizard's questions, the files, the report."""
    pm = plugin_manager()
    check_target(folder, force)  # before asking anything
    extra: dict[str, str] = {}
    if wizard:
        had = current(folder)
        proposed = name or had.get("PROJECT_NAME") or slug(folder.resolve().name) or "app"
        # Offer no default that would be refused (a folder named 123).
        default_name = proposed if NAME.match(proposed) else None
        asked_name = _ask("Project name", default_name, check_name)
        asked_domain = _ask(
            "Base domain", domain or had.get("BASE_DOMAIN") or DEFAULT_DOMAIN, check_domain
        )
        # An answer that keeps the project's value is no change (and rewrites nothing).
        if name is not None or asked_name != had.get("PROJECT_NAME"):
            name = asked_name
        if domain is not None or asked_domain != had.get("BASE_DOMAIN"):
            domain = asked_domain
        for setting in optional_switches(pm):
            label = setting.description or setting.name
            now = (had.get(setting.name) or "").strip().lower() in TRUE
            answer = _confirm(f"{label} ({setting.name})", setting.name, default=now)
            if answer != now:  # an explicit answer wins, a "no" included
                extra[setting.name] = "true" if answer else "false"
    existed = (folder / ".env.dev").exists()
    result = init(pm, folder, name, domain, force, extra)
    report(folder, result, existed)
    return result


def report(folder: Path, result: InitResult, existed: bool) -> None:
    """What was created, overwritten (with where the previous copies are) and kept."""
    if existed:
        ok(f"updated the nself project in {folder}")
    else:
        ok(f"created nself project in {folder}")
    created, overwritten, kept = (result.named(w) for w in ("created", "overwritten", "kept"))
    if created:
        info(f"  created:     {', '.join(created)}")
    envs = [path for path in overwritten if path.startswith(".env.")]
    if envs:
        given = f" but {', '.join(result.replaced)}" if result.replaced else ""
        info(f"  overwritten: {', '.join(envs)} (every value kept{given})")
    if ".gitignore" in overwritten:
        info("  overwritten: .gitignore (nself's lines added, yours kept)")
    if overwritten:
        info(f"  backup:      {result.backup}/ holds the previous copies")
    if result.split:
        info(
            f"  split:       .env.secrets copied to {', '.join(result.split)}: each target "
            "has its own secrets file now (what staging and prod used until now)"
        )
    if kept:
        info(f"  kept:        {', '.join(kept)} (unchanged)")
    if result.folders:
        info(f"  scaffold:    {', '.join(sorted(result.folders))}")
    info("next: nself build && nself start")
