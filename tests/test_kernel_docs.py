"""The docs keep up with the code: every hook and argument, every command and setting."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nself import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS_MD = ROOT / "docs" / "hooks.md"


def hooks() -> list[tuple[str, list[str]]]:
    found = []
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if hasattr(function, "nself_spec"):
            found.append((name, list(inspect.signature(function).parameters)))
    return found


def sections(text: str) -> dict[str, str]:
    """``## `hook` `` heading -> its text up to the next ``## ``."""
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    out = {}
    for part in parts[1:]:
        heading, _, body = part.partition("\n")
        match = re.fullmatch(r"`(\w+)`", heading.strip())
        if match:
            out[match.group(1)] = body
    return out


def test_there_are_hooks_to_document() -> None:
    names = {name for name, _ in hooks()}
    assert {"contribute_services", "contribute_nginx", "contribute_migrations"} <= names
    assert "validate_license" in names


@pytest.mark.parametrize(("hook", "args"), hooks())
def test_every_hook_and_argument_is_documented(hook: str, args: list[str]) -> None:
    documented = sections(HOOKS_MD.read_text())
    assert hook in documented, f"docs/hooks.md has no section '## `{hook}`'"
    body = documented[hook]
    for arg in args:
        assert f"`{arg}`" in body, f"docs/hooks.md: argument `{arg}` of {hook} is undocumented"
    if not args:
        assert "Arguments: none" in body, f"docs/hooks.md: say that {hook} takes no arguments"
    for part in ("Returns", "Called"):
        assert f"- {part}" in body, f"docs/hooks.md: {hook} lacks '{part}'"
    assert "```python" in body and f"def {hook}(" in body, f"docs/hooks.md: {hook} example"


def test_documented_hooks_exist() -> None:
    names = {name for name, _ in hooks()}
    stale = set(sections(HOOKS_MD.read_text())) - names
    assert not stale, f"docs/hooks.md documents hooks that no longer exist: {stale}"


def test_command_and_env_reference_is_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-reference"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, (
        f"{done.stdout}{done.stderr}\nthe reference is stale: run "
        "`.venv/bin/python scripts/gen-reference` and commit docs/reference/"
    )


def test_reference_covers_the_core_commands_and_settings() -> None:
    commands = (ROOT / "docs" / "reference" / "commands.md").read_text()
    for heading in ("`nself init`", "`nself build`", "`nself version`"):
        assert heading in commands
    assert "`--rollback`" in commands and "`--wizard`" in commands
    env = (ROOT / "docs" / "reference" / "env.md").read_text()
    for name in ("PROJECT_NAME", "BASE_DOMAIN", "POSTGRES_PASSWORD", "HASURA_GRAPHQL_JWT_SECRET"):
        assert f"`{name}`" in env
