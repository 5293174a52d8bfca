"""Secrets never appear in command output, errors, --debug tracebacks or generated files.

Runs every command it can on one project (init, build, env, secrets, the lifecycle and
licence commands present, error paths, --debug runs, and --help of every command) and
greps all output and every file the commands wrote for the actual secret values. Only
the env files the user keeps secrets in and `.env.computed` (the compose env) may hold
them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import typer

from nself.cli import make_app
from nself_sdk import secret_name
from nself_sdk.envfiles import parse_text
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]
# Files that hold secrets by design; everything else must not.
ALLOWED = {".env.dev", ".env.local", ".env.staging", ".env.prod", ".env.secrets", ".env.computed"}
USER_SECRETS = {
    # chosen by the user: special characters, so URL-encoded forms matter too
    "AUTH_SMTP_PASS": "smtp:P@ss/w0rd#with%odd&chars",
    "CS_1_ENV_API_TOKEN": "tok_live_5d8a9c0e1f2b3a4c5d6e7f80",
}


def secret_values(project: Path) -> set[str]:
    found: set[str] = set(USER_SECRETS.values())
    for name in (".env.dev", ".env.local", ".env.secrets", ".env.prod"):
        path = project / name
        if path.is_file() and "BROKEN=" not in path.read_text():
            for entry in parse_text(path.read_text(), name):
                if secret_name(entry.key) and len(entry.raw) >= 8 and "${" not in entry.raw:
                    found.add(entry.raw)
    return found


def leaf_commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        if getattr(command, "commands", None):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_no_command_output_or_generated_file_contains_a_secret(
    tmp_path: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NSELF_ENV", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # licence state stays in the test
    outputs: list[tuple[str, str]] = []
    seen: set[str] = set()  # every secret value that existed at any point (rotation!)

    def run(*args: str) -> Result:
        result = nself(*args, cwd=folder)
        outputs.append((" ".join(args), result.output))
        seen.update(secret_values(folder))
        return result

    folder = tmp_path / "leaky"
    init = nself("init", str(folder), "--name", "leaky")
    assert init.code == 0
    outputs.append(("init", init.output))
    set_env(
        folder,
        ".env.secrets",
        AUTH_SMTP_PASS="'" + USER_SECRETS["AUTH_SMTP_PASS"] + "'",
        CS_1_ENV_API_TOKEN=USER_SECRETS["CS_1_ENV_API_TOKEN"],
        CS_1_ENV_DATABASE_URL="${DATABASE_URL}",
    )
    set_env(folder, ".env.local", CS_1_NAME="api", CS_1_IMAGE="busybox:1", CS_1_PORT="8001")

    # the main path, local and prod
    for args in [
        ("build",),
        ("build", "--check"),
        ("build", "--json"),
        ("version",),
        ("env", "show"),
        ("env", "show", "--json"),
        ("env", "status"),
        ("env", "status", "--json"),
        ("secrets", "audit"),
        ("secrets", "audit", "--json"),
        ("secrets", "generate", "--env", "prod", "--json"),
        ("env", "switch", "prod"),
        ("secrets", "generate"),
        ("build",),
        ("build", "--env", "prod", "--json"),
        ("env", "show", "--env", "prod"),
        ("env", "status"),
        ("secrets", "audit", "--json"),
        ("secrets", "rotate", "HASURA_JWT_KEY", "--yes"),
        ("secrets", "rotate", "HASURA_GRAPHQL_ADMIN_SECRET"),  # refused: needs --yes
        ("secrets", "rotate", "POSTGRES_PASSWORD", "--yes"),  # refused: not running
        ("down", "--volumes"),  # refused in prod without --confirm
        ("status",),
        ("status", "--json"),
        ("health",),
        ("urls",),
        ("logs", "postgres"),
        ("exec", "postgres", "--", "env"),
        ("license", "status"),
        ("service", "add", "worker", "--template", "python"),
        ("service", "list"),
        ("plugin", "list"),
        ("plugin", "status"),
        ("db", "migrate", "status"),
        ("db", "migrate", "up", "--confirm"),
        ("db", "backup", "list"),
        ("db", "seed"),  # refused in prod without --confirm
        ("--debug", "build", "--check"),
        ("env", "switch", "local"),
    ]:
        run(*args)
    for name in [
        "POSTGRES_PASSWORD",
        "HASURA_JWT_KEY",
        "HASURA_GRAPHQL_JWT_SECRET",
        "HASURA_GRAPHQL_ADMIN_SECRET",
        "DATABASE_URL",
        "AUTH_SMTP_PASS",
        "CS_1_ENV_API_TOKEN",
        "CS_1_ENV_DATABASE_URL",
    ]:
        for env in ("local", "prod"):
            run("env", "show", "--env", env, "--explain", name, "--json")
            run("env", "show", "--env", env, "--explain", name)

    # every command's help
    root = typer.main.get_command(make_app())
    commands = list(leaf_commands(root))
    assert ("secrets", "rotate") in commands and ("build",) in commands
    for command in commands:
        run(*command, "--help")

    # error paths: a weak prod secret, a secret where a boolean belongs, a broken line
    secrets_file = folder / ".env.secrets"
    good = secrets_file.read_text()
    set_env(folder, ".env.secrets", POSTGRES_PASSWORD="weakpass1")
    run("build", "--env", "prod")
    run("secrets", "audit", "--env", "prod")
    secrets_file.write_text(good)
    set_env(folder, ".env.local", HASURA_ENABLED="${CS_1_ENV_API_TOKEN}")
    run("build")
    run("--debug", "build")
    run("--debug", "env", "show")
    local = (
        (folder / ".env.local").read_text().replace("HASURA_ENABLED=${CS_1_ENV_API_TOKEN}\n", "")
    )
    (folder / ".env.local").write_text(local)
    secrets_file.write_text(good + f'BROKEN="{USER_SECRETS["CS_1_ENV_API_TOKEN"]}\n')
    run("build")
    run("--debug", "secrets", "audit")
    secrets_file.write_text(good)

    # and as real processes, where nothing is captured in-process
    env = {**os.environ, "NO_COLOR": "1"}
    set_env(folder, ".env.local", HASURA_ENABLED="${POSTGRES_PASSWORD}")
    for args in (["--debug", "build"], ["env", "show", "--json"], ["--debug", "secrets", "audit"]):
        done = subprocess.run(
            [_nself(), *args],
            cwd=folder,
            capture_output=True,
            text=True,
            env=env,
        )
        outputs.append((" ".join(args), done.stdout + done.stderr))
        assert "Traceback" in done.stderr or args[0] != "--debug" or done.returncode == 0

    raw = seen | secret_values(folder)
    # 3 dev stubs, 3 generated for prod, 1 rotated JWT key, 2 chosen by the user
    assert len(raw) >= 9
    secrets = raw | {quote(v, safe="") for v in raw}
    assert any("Traceback" in text for _, text in outputs)  # the --debug runs did run
    leaks = [(cmd, s) for cmd, text in outputs for s in secrets if s in text]
    assert not leaks, f"secret printed by: {sorted({cmd for cmd, _ in leaks})}"

    assert any((folder / "services" / "worker").iterdir())  # a scaffolded service is checked
    written = [p for p in folder.rglob("*") if p.is_file() and p.name not in ALLOWED]
    assert any(p.name == "docker-compose.yml" for p in written)
    assert any(".nself" in p.parts for p in written)
    for path in written:
        data = path.read_bytes().decode("utf-8", "replace")
        found = [s for s in secrets if s in data]
        assert not found, f"{path.relative_to(folder)} holds a secret"
    # the compose env does hold them, privately
    computed = folder / ".env.computed"
    assert computed.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("file", [".env.secrets", ".env.local", ".env.dev"])
@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("SuperSecretValue123", "the line has no '='"),  # a pasted secret, on its own
        ("Sup3r Secret Value 123", "cannot parse"),
        ("9Sup3rSecretValue=123", "invalid variable name"),
        ("Sup3r-Secret=Value123", "invalid variable name"),
    ],
)
def test_a_malformed_line_is_never_echoed(
    project: Path, nself: Run, file: str, line: str, where: str
) -> None:
    """A line that is not KEY=value may be a secret pasted in the wrong place: errors name
    the file and line only, in every mode (--debug, --json, as a real process)."""
    path = project / file
    path.write_text(path.read_text() + line + "\n")
    number = len(path.read_text().splitlines())
    pieces = {line, *line.replace("=", " ").split()}
    outputs = [
        nself(*args, cwd=project)
        for args in (
            ("build",),
            ("--debug", "build"),
            ("build", "--debug"),
            ("build", "--json"),
            ("env", "show"),
            ("--debug", "secrets", "audit"),
        )
    ]
    done = subprocess.run(
        [_nself(), "--debug", "build"], cwd=project, capture_output=True, text=True
    )
    outputs.append(Result(done.returncode, done.stdout, done.stderr))
    for result in outputs:
        assert result.code != 0
        assert f"{file}:{number}: " in result.err and where in result.err, result.err
        leaked = [p for p in pieces if len(p) > 3 and p in result.output]
        assert not leaked, result.output


def _nself() -> str:
    return str(Path(sys.executable).with_name("nself"))
