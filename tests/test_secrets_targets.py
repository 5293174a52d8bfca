"""Each target has its own secrets file: `.env.secrets` (local), `.env.secrets.staging`,
`.env.secrets.prod`. Generating one target's secrets never changes another's; a project
from before the split keeps every value. The real CLI, real files, the real engine."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from kernel_helpers import read_computed
from nself_sdk.envfiles import parse_text
from nself_sdk.testing import set_env

FILES = (".env.secrets", ".env.secrets.staging", ".env.secrets.prod")


def values(path: Path) -> dict[str, str]:
    return {e.key: e.raw for e in parse_text(path.read_text(), path.name)}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_gives_each_target_a_private_ignored_file(project: Path) -> None:
    for name in FILES:
        assert mode(project / name) == 0o600, name
        assert values(project / name) == {}, name
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    ignored = subprocess.run(
        ["git", "-C", str(project), "check-ignore", *FILES], capture_output=True, text=True
    )
    assert ignored.stdout.split() == list(FILES)


def test_generating_one_target_never_changes_another(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    assert nself("build", cwd=project).code == 0
    local_before = read_computed(project)["POSTGRES_PASSWORD"]
    untouched = (project / ".env.secrets").read_bytes()

    prod = nself("secrets", "generate", "--env", "prod", "--json", cwd=project)
    assert prod.code == 0, prod.output
    assert json.loads(prod.out)["file"] == ".env.secrets.prod"
    assert (project / ".env.secrets").read_bytes() == untouched
    assert values(project / ".env.secrets.staging") == {}
    assert nself("build", cwd=project).code == 0
    assert read_computed(project)["POSTGRES_PASSWORD"] == local_before  # the laptop's db

    staging = nself("secrets", "generate", "--env", "staging", "--json", cwd=project)
    assert staging.code == 0, staging.output
    made = json.loads(staging.out)["generated"]
    assert {"POSTGRES_PASSWORD", "HASURA_JWT_KEY", "HASURA_GRAPHQL_ADMIN_SECRET"} <= set(made)
    theirs, ours = values(project / ".env.secrets.prod"), values(project / ".env.secrets.staging")
    for name in made:
        assert ours[name] != theirs[name], name  # staging's own, not prod's
    assert all(mode(project / name) == 0o600 for name in FILES)
    shown = nself(
        "env", "show", "--explain", "POSTGRES_PASSWORD", "--env", "staging", "--json", cwd=project
    )
    assert json.loads(shown.out)["set_by"].startswith(".env.secrets.staging:")


def _old_project(project: Path) -> dict[str, str]:
    """The layout before the split: one .env.secrets with prod's generated secrets."""
    for name in FILES[1:]:
        (project / name).unlink()
    old = {
        "POSTGRES_PASSWORD": "Oq8vR2mZ9tK4wN3bH6jF1cD5sA0yEx7L",
        "HASURA_JWT_KEY": "Lx3-jwt-key-for-every-target-0123456789abcdef",
        "HASURA_GRAPHQL_ADMIN_SECRET": "Ad7mN2pQ9rS4tU6vW8xY0zB1cD3eF5gH",
        "GRAFANA_ADMIN_PASSWORD": "Gr4fana-pw-Zq9Xw8Vu7Ts6Rp5On4Ml3K",
        "MY_OWN_TOKEN": "Tok-kept-everywhere-7f3a9c1e5b2d",
        # Auth's mail server outside dev (kept here by that project: settings, not secrets)
        "MAIL_ENABLED": "true",
        "MAIL_PROVIDER": "smtp",
        "MAIL_SMTP_HOST": "smtp.example.com",
        "MAIL_SMTP_USER": "relay-user-7c2f",  # Auth logs in on every mail
        "MAIL_SMTP_PASSWORD": "Smtp-pw-kept-everywhere-4e8b2a9f",
    }
    set_env(project, ".env.secrets", **old)
    return old


def test_an_old_project_is_split_without_losing_a_value(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    old = _old_project(project)
    legacy = (project / ".env.secrets").read_bytes()

    built = nself("build", "--env", "prod", "--json", cwd=project)
    assert built.code == 0, built.output
    assert "copied to .env.secrets.staging and .env.secrets.prod" in built.err
    for name in FILES[1:]:
        assert mode(project / name) == 0o600
        assert values(project / name) == old, name  # every value, as each target had it
    assert (project / ".env.secrets").read_bytes() == legacy  # still the local target's
    shown = nself("env", "show", "--env", "prod", "--json", cwd=project)
    settings = json.loads(shown.out)["settings"]
    assert settings["MY_OWN_TOKEN"]["source"].startswith(".env.secrets.prod:")
    # staging keeps what it had (only what it lacked is generated), prod is not touched;
    # the split is said once, not again
    prod = (project / ".env.secrets.prod").read_bytes()
    again = nself("secrets", "generate", "--env", "staging", "--json", cwd=project)
    assert again.code == 0, again.output
    assert not set(json.loads(again.out)["generated"]) & set(old)
    assert {k: values(project / ".env.secrets.staging")[k] for k in old} == old
    assert (project / ".env.secrets.prod").read_bytes() == prod
    assert "copied to" not in again.err


def test_an_interrupted_split_is_finished_and_an_edited_file_kept(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    old = _old_project(project)
    legacy = (project / ".env.secrets").read_text()
    # What a split stopped after its first copy leaves: staging's copy, no prod file.
    note = "# Copied from .env.secrets by nself when each target got its own secrets file: these\n"
    note += "# are the values staging used until then. Rotate them to give staging "
    note += "secrets of its own.\n"
    staging = project / ".env.secrets.staging"
    staging.write_text(note + legacy)
    staging.chmod(0o600)
    shown = nself("env", "show", "--env", "prod", "--json", cwd=project)
    assert shown.code == 0, shown.output
    assert "copied to .env.secrets.prod" in shown.err
    assert values(project / ".env.secrets.prod") == old  # prod keeps what it used
    assert mode(project / ".env.secrets.prod") == 0o600
    assert staging.read_text() == note + legacy
    assert not [p.name for p in project.iterdir() if p.name.endswith(".tmp")]

    # A target file someone wrote is that target's own: the other is never made from local's.
    (project / ".env.secrets.prod").unlink()
    set_env(project, ".env.secrets.staging", POSTGRES_PASSWORD="Staging-own-pw-9c1d7e3f5a2b")
    again = nself("env", "show", "--env", "prod", "--json", cwd=project)
    assert "copied to" not in again.err
    assert not (project / ".env.secrets.prod").exists()

    # A folder where a target's file belongs is said in one line (no traceback).
    staging.unlink()
    (project / ".env.secrets.staging").mkdir()
    folder = nself("env", "show", "--env", "staging", cwd=project)
    assert folder.code == 1 and "Traceback" not in folder.output, folder.output
    assert ".env.secrets.staging is a folder, where nself reads an env file" in folder.err


OLD_GITIGNORE = "# nself: per-developer, secret and generated files\n.env.local\n.env.secrets\n"


def _untracked(project: Path) -> list[str]:
    """What `git add -A` would take in ``project``'s repository."""
    status = subprocess.run(
        ["git", "-C", str(project), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line[3:] for line in status.stdout.splitlines()]


@pytest.mark.parametrize(
    "command",
    [("build", "--env", "prod"), ("secrets", "generate", "--env", "prod")],
)
def test_an_old_projects_target_secrets_never_reach_git(
    project: Path,
    nself,  # type: ignore[no-untyped-def]
    command: tuple[str, ...],
) -> None:
    old = _old_project(project)
    if command[0] == "secrets":  # an old project that never made real secrets
        (project / ".env.secrets").write_text("")
    (project / ".gitignore").write_text(OLD_GITIGNORE + "!.env.secrets.example\n")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    result = nself(*command, cwd=project)
    assert (project / ".env.secrets.prod").exists(), result.output
    assert ".env.secrets.* added to it" in result.err
    leaked = [name for name in _untracked(project) if name.startswith(".env.secrets")]
    assert leaked == []
    text = (project / ".gitignore").read_text()
    assert text.startswith(OLD_GITIGNORE + "!.env.secrets.example\n")  # the user's lines kept
    if command[0] == "build":
        assert values(project / ".env.secrets.prod") == old
    again = nself(*command, cwd=project)
    assert "added to it" not in again.err and (project / ".gitignore").read_text() == text


def test_the_audit_finds_secrets_files_git_tracks(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    add = ["git", "-C", str(project), "add", "-f", ".env.secrets.prod"]
    subprocess.run(add, check=True)  # committed before .gitignore listed it, say
    audit = nself("secrets", "audit", "--json", cwd=project)
    tracked = [f for f in json.loads(audit.out)["findings"] if f["kind"] == "tracked"]
    assert [f["name"] for f in tracked] == [".env.secrets.prod"], audit.out
    assert "git rm --cached .env.secrets.prod" in tracked[0]["message"]
    assert audit.code == 1
    doctor = nself("doctor", "--check", "secrets", cwd=project)
    assert "tracked by git" in doctor.out + doctor.err, doctor.output
    rm = ["git", "-C", str(project), "rm", "-q", "--cached", ".env.secrets.prod"]
    subprocess.run(rm, check=True)
    again = nself("secrets", "audit", "--json", cwd=project)
    assert not [f for f in json.loads(again.out)["findings"] if f["kind"] == "tracked"]


def test_init_force_splits_an_old_project_first(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    old = _old_project(project)
    result = nself("init", ".", "--force", cwd=project)
    assert result.code == 0, result.output
    assert "split:" in result.out
    assert values(project / ".env.secrets.prod") == old
    assert values(project / ".env.secrets.staging") == old


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_prod_secrets_leave_the_running_local_database_alone(tmp_path: Path, nself) -> None:  # type: ignore[no-untyped-def]
    """The walkthrough: `secrets generate --env prod` on a laptop used to change the local
    database's password in the env files; the next command was refused by the database."""
    from docker_helpers import standin_project

    with standin_project(nself, tmp_path, "nselfsec") as folder:
        assert nself("build", cwd=folder).code == 0
        started = nself("start", "postgres", "--timeout", "120", cwd=folder)
        assert started.code == 0, started.output
        assert nself("db", "migrate", "status", cwd=folder).code == 0
        for env in ("prod", "staging"):
            assert nself("secrets", "generate", "--env", env, cwd=folder).code == 0
        assert nself("build", cwd=folder).code == 0
        status = nself("db", "migrate", "status", cwd=folder)
        assert status.code == 0, status.output

        # A password the database does not have: said as such, not "is it running?"
        set_env(folder, ".env.secrets", POSTGRES_PASSWORD="Wr0ng-but-strong-pw-9f8e7d6c5b4a")
        assert nself("build", cwd=folder).code == 0
        refused = nself("db", "migrate", "status", cwd=folder)
        assert refused.code == 1
        assert "password authentication failed" in refused.err
        assert "refused POSTGRES_PASSWORD" in refused.err
        assert "is the database running" not in refused.err


def test_the_audit_finds_what_staging_and_prod_still_share(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    old = _old_project(project)
    audit = nself("secrets", "audit", "--env", "prod", "--json", cwd=project)
    shared = {f["name"] for f in json.loads(audit.out)["findings"] if f["kind"] == "shared"}
    assert {"POSTGRES_PASSWORD", "HASURA_JWT_KEY", "MY_OWN_TOKEN"} <= shared
    assert not any(value in audit.output for value in old.values())
    rotated = nself("secrets", "rotate", "HASURA_JWT_KEY", "--env", "prod", "--yes", cwd=project)
    assert rotated.code == 0, rotated.output
    again = nself("secrets", "audit", "--env", "staging", "--json", cwd=project)
    shared = {f["name"] for f in json.loads(again.out)["findings"] if f["kind"] == "shared"}
    assert "HASURA_JWT_KEY" not in shared and "POSTGRES_PASSWORD" in shared
    assert values(project / ".env.secrets.staging")["HASURA_JWT_KEY"] == old["HASURA_JWT_KEY"]
