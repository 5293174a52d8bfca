"""`nself env switch|status|show`: real project folders, the real CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kernel_helpers import mail_server
from nself_sdk import MASK
from nself_sdk.envfiles import parse_text
from nself_sdk.testing import set_env


def dev_secrets(project: Path) -> dict[str, str]:
    entries = parse_text((project / ".env.dev").read_text(), ".env.dev")
    return {
        e.key: e.raw
        for e in entries
        if any(w in e.key for w in ("PASSWORD", "SECRET", "KEY")) and len(e.raw) >= 16
    }


def test_switch_sets_the_target_every_command_uses(project: Path, nself, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NSELF_ENV", raising=False)
    result = nself("env", "switch", "staging", cwd=project)
    assert result.code == 0, result.output
    assert (project / ".nself" / "env").read_text().strip() == "staging"
    assert ".env.dev < .env.staging < .env.secrets" in result.out
    # the dev stubs cannot build staging yet: said, with the fix
    assert "nself secrets generate" in result.err

    status = nself("env", "status", "--json", cwd=project)
    data = json.loads(status.out)
    assert data["env"] == "staging" and data["source"].startswith(".nself/env")
    assert [layer["file"] for layer in data["layers"]] == [
        ".env.dev",
        ".env.staging",
        ".env.secrets.staging",
    ]

    # NSELF_ENV beats the switch, --env beats both
    monkeypatch.setenv("NSELF_ENV", "prod")
    assert json.loads(nself("env", "status", "--json", cwd=project).out)["env"] == "prod"
    data = json.loads(nself("env", "status", "--env", "local", "--json", cwd=project).out)
    assert (data["env"], data["source"]) == ("dev", "--env")
    warned = nself("env", "switch", "local", cwd=project)
    assert "NSELF_ENV=prod" in warned.err


def test_switch_to_an_unknown_environment_is_a_usage_error(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    result = nself("env", "switch", "qa", cwd=project)
    assert result.code == 2
    assert "unknown environment 'qa'" in result.err and "local (dev), staging, prod" in result.err
    assert not (project / ".nself" / "env").exists()


# Where a wrong target came from: how the error names it, and how the hint corrects it.
WRONG_TARGET = {
    "--env": ("(--env)", "give --env one of: local (dev), staging, prod"),
    "NSELF_ENV": (
        "(the variable NSELF_ENV)",
        "set NSELF_ENV to one of: local (dev), staging, prod, or unset it",
    ),
    ".nself/env": (
        "(.nself/env, written by `nself env switch`)",
        "choose the target again: nself env switch local|staging|prod",
    ),
}


@pytest.mark.parametrize("source", list(WRONG_TARGET))
def test_an_unknown_target_is_a_usage_error_from_every_source(  # type: ignore[no-untyped-def]
    project: Path, nself, monkeypatch, source: str
) -> None:
    """One kind of mistake, one exit code (2), whichever of the three sources named it; the
    hint says how to correct that source. ``nself build`` alone runs before Typer loads."""
    named, hint = WRONG_TARGET[source]
    monkeypatch.delenv("NSELF_ENV", raising=False)
    args: tuple[str, ...] = ()
    if source == "--env":
        args = ("--env", "bogus")
    elif source == "NSELF_ENV":
        monkeypatch.setenv("NSELF_ENV", "bogus")
    else:
        (project / ".nself").mkdir(exist_ok=True)
        (project / ".nself" / "env").write_text("bogus\n")
    for command in (("build",), ("build", "--check"), ("env", "status")):
        result = nself(*command, *args, cwd=project)
        assert result.code == 2, (command, result.output)
        assert result.err.splitlines() == [
            f"error: unknown environment 'bogus' {named}",
            f"hint: {hint}",
        ], command
    assert not (project / "docker-compose.yml").exists()


def test_a_switch_repairs_a_damaged_target_and_warns_of_a_bad_variable(  # type: ignore[no-untyped-def]
    project: Path, nself, monkeypatch
) -> None:
    (project / ".nself").mkdir(exist_ok=True)
    (project / ".nself" / "env").write_text("bogus\n")
    monkeypatch.setenv("NSELF_ENV", "bogus")
    switched = nself("env", "switch", "local", cwd=project)
    assert switched.code == 0, switched.output
    assert (project / ".nself" / "env").read_text() == "dev\n"
    assert "NSELF_ENV=bogus is set in your shell and still wins over this" in switched.err
    assert nself("build", cwd=project).code == 2  # it does: refused until it is unset
    monkeypatch.delenv("NSELF_ENV")
    assert nself("build", cwd=project).code == 0


def test_show_redacts_every_secret(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    set_env(
        project,
        ".env.local",
        CS_1_NAME="api",
        CS_1_IMAGE="busybox",
        CS_1_ENV_STRIPE_KEY="sk_live_abcdefghijklmnop1234",
        MY_URL="https://bob:hunter22hunter@example.com/x",
    )
    secrets = dev_secrets(project)
    assert len(secrets) >= 3
    text = nself("env", "show", cwd=project)
    assert text.code == 0, text.output
    data = json.loads(nself("env", "show", "--json", cwd=project).out)["settings"]
    for output in (text.output, json.dumps(data)):
        for value in [*secrets.values(), "sk_live_abcdefghijklmnop1234", "hunter22hunter"]:
            assert value not in output
    lines = (project / ".env.dev").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith("POSTGRES_PASSWORD="))
    source = f".env.dev:{line}"
    assert data["POSTGRES_PASSWORD"] == {"value": MASK, "source": source, "secret": True}
    assert data["HASURA_GRAPHQL_JWT_SECRET"]["value"] == MASK
    assert data["CS_1_ENV_STRIPE_KEY"]["secret"] is True  # named like a secret
    assert data["DATABASE_URL"]["value"].startswith(f"postgres://postgres:{MASK}@postgres:5432/")
    assert data["MY_URL"]["value"] == f"https://bob:{MASK}@example.com/x"
    assert data["POSTGRES_USER"]["value"] == "postgres"  # ordinary values are shown
    # a name that describes a secret is no secret: the shortest password Auth accepts
    assert data["AUTH_PASSWORD_MIN_LENGTH"] == {
        "value": "12",
        "source": "(default)",
        "secret": False,
    }
    only = json.loads(nself("env", "show", "postgres_u", "--json", cwd=project).out)["settings"]
    assert set(only) == {"POSTGRES_URL", "POSTGRES_USER"}


def test_explain_names_the_winner_and_what_it_overrode(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    set_env(project, ".env.local", POSTGRES_DB="localdb")
    set_env(project, ".env.secrets", HASURA_JWT_KEY="x" * 8 + "Q7pL2mZ9vR4tK8wN3bH6jF1cD5sA0yE")
    result = nself("env", "show", "--explain", "POSTGRES_DB", cwd=project)
    assert result.code == 0, result.output
    assert "set by:     .env.local:2" in result.out
    assert "the plugin's declared default" in result.out
    jwt = json.loads(nself("env", "show", "--explain", "HASURA_JWT_KEY", "--json", cwd=project).out)
    assert jwt["set_by"] == ".env.secrets:2"
    dev_lines = (project / ".env.dev").read_text().splitlines()
    key_line = next(n for n, t in enumerate(dev_lines, 1) if t.startswith("HASURA_JWT_KEY="))
    assert jwt["overrides"] == [f".env.dev:{key_line}"]
    assert jwt["value"] == MASK and jwt["used_by"] == ["hasura", "auth"]
    derived = json.loads(
        nself("env", "show", "--explain", "HASURA_GRAPHQL_JWT_SECRET", "--json", cwd=project).out
    )
    assert derived["refers_to"] == ["HASURA_JWT_KEY"] and derived["set_by"] == "(default)"
    unknown = nself("env", "show", "--explain", "POSTGRES_PASWORD", cwd=project)
    assert unknown.code == 1
    assert "did you mean POSTGRES_PASSWORD" in unknown.err


def test_status_reports_what_changed_since_the_last_build(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    assert "last build: never" in nself("env", "status", cwd=project).out
    assert nself("build", cwd=project).code == 0
    assert "up to date" in nself("env", "status", cwd=project).out
    set_env(project, ".env.local", POSTGRES_DB="other", NEW_THING="1")
    compose = project / "docker-compose.yml"
    compose.write_text(compose.read_text() + "# my edit\n")
    data = json.loads(nself("env", "status", "--json", cwd=project).out)
    assert data["settings_changed"]["POSTGRES_DB"] == "changed"
    assert data["settings_changed"]["NEW_THING"] == "added"
    assert data["settings_changed"]["DATABASE_URL"] == "changed"
    assert data["out_of_date"][".env.computed"] == "changed"
    assert data["edited_by_hand"] == ["docker-compose.yml"]
    text = nself("env", "status", cwd=project)
    assert "setting changed since the last build: POSTGRES_DB" in text.out
    assert "edited by hand" in text.err


def test_admin_ui_is_refused_outside_local(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    mail_server(project)
    assert nself("build", "--env", "prod", cwd=project).code == 0
    set_env(project, ".env.prod", ADMIN_ENABLED="true")
    refused = nself("build", "--env", "prod", cwd=project)
    assert refused.code == 1
    assert "ADMIN_ENABLED=true is refused in prod" in refused.err
    assert ".env.prod:3" in refused.err
    set_env(project, ".env.local", ADMIN_ENABLED="true")
    assert nself("build", "--env", "local", cwd=project).code == 0


@pytest.mark.docker
def test_a_generated_prod_config_is_accepted_by_compose(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    assert nself("env", "switch", "prod", cwd=project).code == 0
    assert nself("secrets", "generate", cwd=project).code == 0
    mail_server(project)
    built = nself("build", cwd=project)
    assert built.code == 0, built.output
    config = subprocess.run(
        ["docker", "compose", "--env-file", ".env.computed", "config", "--format", "json"],
        cwd=project / ".nself" / "targets" / "prod",  # what `nself deploy prod` ships
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stderr
    resolved = json.loads(config.stdout)
    secrets = parse_text((project / ".env.secrets.prod").read_text(), ".env.secrets.prod")
    password = next(e.raw for e in secrets if e.key == "POSTGRES_PASSWORD")
    assert resolved["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    assert password not in (project / ".env.dev").read_text()
