"""`nself init --force` through the real CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import Result

Run = Callable[..., Result]


def values(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


# -- --force ---------------------------------------------------------------------------------


def test_force_keeps_name_domain_dev_secrets_and_team_edits(tmp_path: Path, nself: Run) -> None:
    folder = tmp_path / "F"
    assert nself("init", str(folder), "--name", "custom", "--domain", "ex.com").code == 0
    dev = folder / ".env.dev"
    dev.write_text(dev.read_text() + "REDIS_ENABLED=true\n")
    before = dev.read_text()
    old = values(dev)

    result = nself("init", str(folder), "--force")
    assert result.code == 0, result.output
    now = values(dev)
    assert now["PROJECT_NAME"] == "custom" and now["BASE_DOMAIN"] == "ex.com"
    assert now["REDIS_ENABLED"] == "true"
    for name in ("POSTGRES_PASSWORD", "HASURA_GRAPHQL_ADMIN_SECRET", "HASURA_JWT_KEY"):
        assert now[name] == old[name], name  # still matches the existing volumes
    # A copy of what was overwritten, and an accurate report of what happened.
    backups = list((folder / ".nself" / "init-backups").iterdir())
    assert len(backups) == 1 and (backups[0] / ".env.dev").read_text() == before
    assert "overwritten: .env.dev (every value kept)" in result.out
    assert f".nself/init-backups/{backups[0].name}/" in result.out
    kept = next(line for line in result.out.splitlines() if "kept:" in line)
    assert ".env.local" in kept and ".env.secrets" in kept
    assert "created:" not in result.out
    built = nself("build", "--json", cwd=folder)
    assert built.code == 0, built.output
    data = json.loads(built.out)
    assert data["project"] == "custom" and "redis" in data["services"]
    assert data["urls"]["hasura"] == "https://api.ex.com"


def test_force_replaces_only_what_is_given(tmp_path: Path, nself: Run) -> None:
    folder = tmp_path / "g"
    assert nself("init", str(folder), "--name", "one", "--domain", "one.example.com").code == 0
    secret = values(folder / ".env.dev")["POSTGRES_PASSWORD"]
    result = nself("init", str(folder), "--force", "--domain", "two.example.com")
    assert result.code == 0, result.output
    dev = values(folder / ".env.dev")
    assert dev["BASE_DOMAIN"] == "two.example.com" and dev["PROJECT_NAME"] == "one"
    assert dev["POSTGRES_PASSWORD"] == secret
    assert values(folder / ".env.staging")["BASE_DOMAIN"] == "staging.two.example.com"
    assert values(folder / ".env.prod")["BASE_DOMAIN"] == "two.example.com"
    assert "overwritten: .env.dev, .env.prod, .env.staging" in result.out
    assert "but BASE_DOMAIN" in result.out


def test_force_on_an_unchanged_project_rewrites_nothing(project: Path, nself: Run) -> None:
    before = {p: (project / p).read_text() for p in (".env.dev", ".env.prod", ".gitignore")}
    result = nself("init", str(project), "--force")
    assert result.code == 0, result.output
    assert {p: (project / p).read_text() for p in before} == before
    assert "overwritten" not in result.out and not (project / ".nself" / "init-backups").exists()
