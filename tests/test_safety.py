"""The safety-rules table (nself_sdk.require_confirmation) and output redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel_helpers import mail_server
from nself_sdk import MASK, NselfError, require_confirmation, safety_rule, scrub, secret_name
from nself_sdk.testing import set_env
from plugin_helpers import make_bundle


@pytest.mark.parametrize(
    ("action", "dev", "staging", "prod"),
    [
        ("deploy", "free", "free", "confirm"),
        ("migrate", "free", "caution", "confirm"),
        ("delete-data", "free", "caution", "confirm"),
        ("provision", "free", "confirm", "confirm"),
        ("admin", "free", "refuse", "refuse"),
    ],
)
def test_the_seed_table(action: str, dev: str, staging: str, prod: str) -> None:
    assert [safety_rule(e, action) for e in ("dev", "staging", "prod")] == [  # type: ignore[arg-type]
        dev,
        staging,
        prod,
    ]


def test_prod_needs_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(NselfError) as refused:
        require_confirmation("prod", "delete-data", False, interactive=False)
    assert "needs explicit confirmation" in refused.value.message
    assert "--confirm" in (refused.value.hint or "")
    require_confirmation("prod", "delete-data", True)  # confirmed: allowed
    require_confirmation("dev", "delete-data", False)  # local: freely
    require_confirmation("staging", "migrate", False)  # caution: a warning
    assert "take care" in capsys.readouterr().err
    with pytest.raises(NselfError, match="not allowed in staging"):
        require_confirmation("staging", "admin", True)


def test_delete_in_prod_asks_for_the_project_name(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nself_sdk import load_config

    config = load_config(project, "dev")
    config.env = "prod"  # the question only depends on the target
    answers = iter(["wrong", "demo"])
    monkeypatch.setattr("typer.prompt", lambda *a, **k: next(answers))
    with pytest.raises(NselfError, match="cancelled"):
        require_confirmation(config, "delete-data", False, interactive=True)
    require_confirmation(config, "delete-data", False, interactive=True)


def test_url_passwords_are_always_masked() -> None:
    assert scrub("postgres://u:hunter2hunter2@db:5432/x") == f"postgres://u:{MASK}@db:5432/x"


def test_malformed_secret_line_is_not_echoed(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    secret = "s3cr3t-value-that-must-not-leak"
    (project / ".env.secrets").write_text(f'GOOD=1\nBROKEN="{secret}\n')
    result = nself("build", cwd=project)
    assert result.code == 1
    assert ".env.secrets:2" in result.err
    assert secret not in result.output


def test_debug_traceback_is_scrubbed(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    secret = "Zq7-debug-secret-value-0123456789abcdef"
    set_env(project, ".env.secrets", MY_API_TOKEN=secret, FLAG_X="${MY_API_TOKEN}")
    set_env(project, ".env.local", HASURA_ENABLED="${MY_API_TOKEN}")  # not a boolean
    result = nself("--debug", "build", cwd=project)
    assert result.code == 1
    assert "Traceback" in result.err
    assert secret not in result.output
    assert MASK in result.output


def test_deleting_volumes_in_prod_needs_confirmation(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    assert nself("env", "switch", "prod", cwd=project).code == 0
    assert nself("secrets", "generate", cwd=project).code == 0
    mail_server(project)
    assert nself("build", cwd=project).code == 0
    refused = nself("down", "--volumes", cwd=project)
    assert refused.code == 4  # not confirmed (the exit-code table)
    assert "deleting data" in refused.err and "in prod needs explicit confirmation" in refused.err
    assert "--confirm" in refused.err


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("POSTGRES_PASSWORD", True),
        ("PGPASSWORD", True),
        ("HASURA_GRAPHQL_JWT_SECRET", True),
        ("HASURA_JWT_KEY", True),
        ("MEILI_MASTERKEY", True),
        ("AUTH_SMTP_PASS", True),
        ("GITHUB_TOKEN", True),
        ("POSTGRES_USER", False),
        ("S3_ACCESS_KEY_ID", False),
        ("JWT_KEY_FILE", False),
        ("KEYCLOAK_REALM", False),
        ("AUTH_PASSWORD_MIN_LENGTH", False),
        ("SESSION_TOKEN_TTL", False),
        ("API_KEY_ROTATION_TIMEOUT", False),
    ],
)
def test_names_that_look_secret(name: str, secret: bool) -> None:
    assert secret_name(name) is secret


def test_every_command_that_asks_exits_4_when_not_confirmed(
    project: Path, tmp_path: Path, nself
) -> None:  # type: ignore[no-untyped-def]
    """A missing confirmation is one exit code (4) whichever command asks, and nothing was
    changed: without a terminal nothing is asked, the flag is needed."""
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    mail_server(project)
    set_env(project, ".env.prod", DEPLOY_HOST="prod.example.com")
    bundle = make_bundle(tmp_path, "asker", extra='[route]\nsubdomain = "asker"\n')
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    asks = [
        ("deploy", "prod"),
        ("rollback", "--env", "prod"),
        ("db", "migrate", "up", "--env", "prod"),
        ("db", "migrate", "down", "--env", "prod"),
        ("db", "seed", "--env", "prod"),
        ("db", "restore", "backup-2026-01-01-00-00.dump", "--env", "prod"),
        ("db", "pitr", "--target", "2026-05-01 14:30:00 UTC", "--env", "prod"),
        ("db", "reset"),
        ("secrets", "rotate", "HASURA_GRAPHQL_ADMIN_SECRET"),
        ("plugin", "install", str(bundle)),
    ]
    for argv in asks:
        result = nself(*argv, cwd=project)
        assert result.code == 4, (argv, result.output)
        assert "Traceback" not in result.output, argv
    after = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    assert {p: v for p, v in after.items() if p.suffix != ".lck"} == before  # locks aside
