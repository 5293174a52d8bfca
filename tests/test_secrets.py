"""`nself secrets generate|audit|rotate` on real files and modes (rotate with a running
stack is in test_secrets_rotate.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from kernel_helpers import mail_server
from nself_sdk.envfiles import parse_text
from nself_sdk.testing import set_env


def values(path: Path) -> dict[str, str]:
    return {e.key: e.raw for e in parse_text(path.read_text(), path.name)}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_creates_a_private_file_and_never_overwrites(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    secrets = project / ".env.secrets.prod"
    secrets.unlink()
    old_umask = os.umask(0o022)  # a permissive umask must not matter
    try:
        result = nself("secrets", "generate", "--env", "prod", "--json", cwd=project)
    finally:
        os.umask(old_umask)
    assert result.code == 0, result.output
    generated = json.loads(result.out)["generated"]
    assert set(generated) >= {"POSTGRES_PASSWORD", "HASURA_JWT_KEY", "HASURA_GRAPHQL_ADMIN_SECRET"}
    assert mode(secrets) == 0o600
    first = values(secrets)
    dev = values(project / ".env.dev")
    for name in generated:
        assert len(first[name]) >= 32 and first[name] != dev.get(name)
        assert first[name] not in result.output

    # a value the user set is kept; only what is missing is added
    mine = "my-own-Postgres-password-7c1f9e2a"
    text = secrets.read_text().replace(first["POSTGRES_PASSWORD"], mine)
    secrets.write_text(text)
    again = nself("secrets", "generate", "--env", "prod", cwd=project)
    assert again.code == 0 and "nothing to generate" in again.out
    assert values(secrets)["POSTGRES_PASSWORD"] == mine
    assert values(secrets)["HASURA_JWT_KEY"] == first["HASURA_JWT_KEY"]
    mail_server(project)
    assert nself("build", "--env", "prod", cwd=project).code == 0


def test_generate_for_local_only_fills_gaps(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    result = nself("secrets", "generate", cwd=project)
    assert result.code == 0 and "nothing to generate" in result.out
    dev = project / ".env.dev"
    dev.write_text(
        "".join(x for x in dev.read_text().splitlines(True) if "HASURA_JWT_KEY" not in x)
    )
    result = nself("secrets", "generate", "--json", cwd=project)
    assert json.loads(result.out)["generated"] == ["HASURA_JWT_KEY"]
    assert "HASURA_JWT_KEY" in values(project / ".env.secrets")


def test_generate_refuses_a_readable_secrets_file(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    secrets = project / ".env.secrets.prod"
    secrets.chmod(0o644)
    before = secrets.read_bytes()
    result = nself("secrets", "generate", "--env", "prod", cwd=project)
    assert result.code == 1
    assert "readable by group or others" in result.err and "chmod 600" in result.err
    assert secrets.read_bytes() == before


def test_audit_finds_each_kind_of_problem(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    assert nself("secrets", "audit", cwd=project).code == 0  # fresh dev secrets are fine
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    clean = nself("secrets", "audit", "--env", "prod", "--json", cwd=project)
    assert clean.code == 0, clean.output
    assert json.loads(clean.out)["findings"] == []

    secrets = project / ".env.secrets.prod"
    generated = values(secrets)
    dev = values(project / ".env.dev")
    set_env(
        project,
        ".env.secrets.prod",
        HASURA_GRAPHQL_ADMIN_SECRET="short",  # weak
        MY_API_TOKEN=generated["HASURA_JWT_KEY"],  # reused
        POSTGRES_PASSWORD=dev["POSTGRES_PASSWORD"],  # the committed dev stub, copied
    )
    result = nself("secrets", "audit", "--env", "prod", "--json", cwd=project)
    assert result.code == 1
    found = {(f["kind"], f["name"]) for f in json.loads(result.out)["findings"]}
    assert ("weak", "HASURA_GRAPHQL_ADMIN_SECRET") in found
    assert ("reused", "MY_API_TOKEN") in found and ("reused", "HASURA_JWT_KEY") in found
    assert ("dev-stub", "POSTGRES_PASSWORD") in found
    for value in (generated["HASURA_JWT_KEY"], dev["POSTGRES_PASSWORD"]):
        assert value not in result.output

    # a dev value used by prod because nothing overrides it
    secrets.write_text("# empty\n")
    result = nself("secrets", "audit", "--env", "prod", "--json", cwd=project)
    found = {(f["kind"], f["name"]) for f in json.loads(result.out)["findings"]}
    assert ("dev-stub", "HASURA_JWT_KEY") in found

    secrets.chmod(0o644)
    result = nself("secrets", "audit", "--env", "prod", cwd=project)
    assert result.code == 1
    assert "readable: .env.secrets.prod: readable by everyone (mode 0644)" in result.err


def test_rotate_refuses_what_it_cannot_rotate(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    unknown = nself("secrets", "rotate", "NOPE", cwd=project)
    assert unknown.code == 2 and "not a secret nself manages" in unknown.err
    derived = nself("secrets", "rotate", "HASURA_GRAPHQL_JWT_SECRET", cwd=project)
    assert derived.code == 2 and "rotate HASURA_JWT_KEY instead" in derived.err
    external = nself("secrets", "rotate", "AUTH_SMTP_PASS", cwd=project)
    assert external.code == 2 and "issued by another system" in external.err


def test_rotating_the_jwt_key_explains_and_asks(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    assert nself("build", cwd=project).code == 0
    before = {p: (project / p).read_bytes() for p in (".env.secrets", ".env.computed")}
    refused = nself("secrets", "rotate", "HASURA_JWT_KEY", cwd=project)
    assert refused.code == 4  # not confirmed
    assert "signed-in users are signed out and must sign in again" in refused.err
    assert "rerun with --yes" in refused.err
    assert {p: (project / p).read_bytes() for p in before} == before

    old = "Lq3-local-override-of-the-jwt-key-0123456789"
    set_env(project, ".env.local", HASURA_JWT_KEY=old)
    done = nself("secrets", "rotate", "HASURA_JWT_KEY", "--yes", cwd=project)
    assert done.code == 0, done.output
    assert "old value is still written in .env.local:2" in done.err
    # the stack is not running: its users are named, to pick it up when started
    assert "will use the new value when started: hasura, auth" in done.out
    new = values(project / ".env.secrets")["HASURA_JWT_KEY"]
    assert new != old and len(new) >= 32
    assert new in (project / ".env.computed").read_text()
    assert mode(project / ".env.secrets") == 0o600
    assert new not in done.output and old not in done.output


def test_rotating_the_database_password_needs_the_running_database(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    assert nself("build", cwd=project).code == 0
    before = {p: (project / p).read_bytes() for p in (".env.secrets", ".env.computed")}
    result = nself("secrets", "rotate", "POSTGRES_PASSWORD", cwd=project)
    assert result.code == 1
    assert "stored inside the database" in result.err and "nself start" in result.err
    assert {p: (project / p).read_bytes() for p in before} == before


def test_audit_checks_the_env_computed_kept_builds_hold(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", REDIS_ENABLED="true")  # .env.computed changes: it is kept
    assert nself("build", cwd=project).code == 0
    [kept] = (project / ".nself" / "generations").glob("*/files/.env.computed")
    assert nself("secrets", "audit", cwd=project).code == 0
    kept.chmod(0o640)
    result = nself("secrets", "audit", "--json", cwd=project)
    assert result.code == 1
    rel = kept.relative_to(project).as_posix()
    assert {(f["kind"], f["name"]) for f in json.loads(result.out)["findings"]} == {
        ("readable", rel)
    }
