"""`nself init --force` and `nself init --wizard` through the real CLI."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from nself_sdk.testing import Result

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


# -- --wizard --------------------------------------------------------------------------------


def test_wizard_asks_again_at_once_after_a_bad_answer(
    tmp_path: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = "Bad Name!\ngood\nno_dots\nex.com\n" + "n\n" * 20
    monkeypatch.setattr("sys.stdin", io.StringIO(answers))
    result = nself("init", str(tmp_path / "w"), "--wizard")
    assert result.code == 0, result.output
    assert result.out.count("Project name") == 2 and result.out.count("Base domain") == 2
    assert "error: invalid project name 'Bad Name!'" in result.err
    assert "error: invalid domain 'no_dots'" in result.err
    dev = values(tmp_path / "w" / ".env.dev")
    assert dev["PROJECT_NAME"] == "good" and dev["BASE_DOMAIN"] == "ex.com"


def test_wizard_gives_up_cleanly_at_the_end_of_input(
    tmp_path: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Bad Name!\nfoo.com\n\n\n\n\n\n\n"))
    result = nself("init", str(tmp_path / "w"), "--wizard")
    assert result.code == 2, result.output
    # Asked again right away, not after the service questions.
    assert result.out.index("Project name") < result.out.index("Base domain")
    last = result.err.splitlines()[-2:]
    assert last[0].startswith("error: the wizard got no answer for ")
    assert "nothing was written" in last[0] and last[1].startswith("hint: ")
    assert "Traceback" not in result.output and not (tmp_path / "w").exists()


def test_wizard_offers_monitoring(
    tmp_path: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nself_builtins.project.scaffold import optional_switches
    from nself_sdk.host import plugin_manager as make_manager

    asked = [s.name for s in optional_switches(make_manager())]
    assert "MONITORING_ENABLED" in asked  # off in dev, on elsewhere: offered too
    answers = "".join("y\n" if n == "MONITORING_ENABLED" else "n\n" for n in asked)
    monkeypatch.setattr("sys.stdin", io.StringIO("mon\n\n" + answers))
    result = nself("init", str(tmp_path / "m"), "--wizard")
    assert result.code == 0, result.output
    assert "(MONITORING_ENABLED)" in result.out
    dev = values(tmp_path / "m" / ".env.dev")
    assert dev["MONITORING_ENABLED"] == "true" and "REDIS_ENABLED" not in dev


def test_wizard_checks_the_folder_before_asking(project: Path, nself: Run) -> None:
    result = nself("init", str(project), "--wizard")
    assert result.code == 1 and "already holds an nself project" in result.err
    assert "Project name" not in result.out


# -- a full disk -----------------------------------------------------------------------------


def _disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)


def test_init_on_a_full_disk_names_the_path_and_leaves_nothing(
    tmp_path: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    _disk_full(monkeypatch)
    result = nself("init", str(tmp_path / "T2" / "sub"))
    assert result.code == 1, result.output
    first = result.err.splitlines()[0]
    assert first.startswith("error: ") and "no space left on device" in first
    assert str(tmp_path / "T2" / "sub") in first and "OSError" not in first
    assert not (tmp_path / "T2").exists()  # nothing left behind: `init T2` works later


def test_build_on_a_full_disk_names_the_path(
    project: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    _disk_full(monkeypatch)
    result = nself("build", cwd=project)
    assert result.code == 1, result.output
    first = result.err.splitlines()[0]
    assert "no space left on device" in first
    assert first.startswith("error: cannot write ") and "write:" not in first


# -- --force and what it cannot keep ------------------------------------------------------------


def test_force_refuses_a_committed_env_file_that_does_not_parse(project: Path, nself: Run) -> None:
    dev = project / ".env.dev"
    dev.write_text(dev.read_text() + "BAR=1\ngarbage line here\n")
    line = dev.read_text().count("\n")
    before = {p.name: p.read_bytes() for p in project.iterdir() if p.is_file()}
    result = nself("init", str(project), "--force")
    assert result.code == 1, result.output
    assert result.err.splitlines()[0].startswith(f"error: .env.dev:{line}: ")
    assert "hint: " in result.err and "garbage" not in result.output
    assert {p.name: p.read_bytes() for p in project.iterdir() if p.is_file()} == before
    assert not (project / ".nself" / "init-backups").exists()


def test_force_keeps_the_users_comments(project: Path, nself: Run) -> None:
    dev = project / ".env.dev"
    text = dev.read_text().replace(
        "POSTGRES_PASSWORD=", "# rotated 2026-01: ask Ann\nPOSTGRES_PASSWORD=", 1
    )
    dev.write_text(text + "# our own settings\nBAR=1\n# the end\n")
    (project / ".env.prod").write_text("# prod note\nOLD_SETTING=x\n")
    result = nself("init", str(project), "--force")
    assert result.code == 0, result.output
    now = dev.read_text()
    assert "# rotated 2026-01: ask Ann\nPOSTGRES_PASSWORD=" in now
    assert "# our own settings\nBAR=1\n# the end\n" in now
    assert "# prod note\nOLD_SETTING=x\n" in (project / ".env.prod").read_text()


def test_force_wizard_defaults_to_the_current_value_and_a_no_wins(
    project: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nself_builtins.project.scaffold import optional_switches
    from nself_sdk.host import plugin_manager as make_manager

    dev = project / ".env.dev"
    dev.write_text(dev.read_text() + "REDIS_ENABLED=true\n")
    assert nself("init", str(project), "--force").code == 0  # the file in today's layout
    asked = [s.name for s in optional_switches(make_manager())]
    # Every default accepted: the current values stay, and nothing is reported as changed.
    monkeypatch.setattr("sys.stdin", io.StringIO("\n\n" + "\n" * len(asked)))
    result = nself("init", str(project), "--force", "--wizard")
    assert result.code == 0, result.output
    assert "(REDIS_ENABLED) [Y/n]" in result.out and "(MAIL_ENABLED) [y/N]" in result.out
    assert values(dev)["REDIS_ENABLED"] == "true"
    assert "overwritten" not in result.out and " but " not in result.out
    # An explicit "no" to a feature that is on turns it off.
    answers = "".join("n\n" if n == "REDIS_ENABLED" else "\n" for n in asked)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n\n" + answers))
    result = nself("init", str(project), "--force", "--wizard")
    assert result.code == 0, result.output
    assert values(dev)["REDIS_ENABLED"] == "false"
    assert "(every value kept but REDIS_ENABLED)" in result.out
    assert "PROJECT_NAME" not in result.out and "BASE_DOMAIN" not in result.out


# -- wording ---------------------------------------------------------------------------------


def test_the_refusal_and_the_force_report_read_well(project: Path, nself: Run) -> None:
    refused = nself("init", str(project))
    assert refused.code == 1
    assert "hint: use --force to rewrite its committed env files: their values are kept" in (
        refused.err
    )
    assert ".nself/init-backups" in refused.err
    (project / ".gitignore").write_text("node_modules/\n")
    result = nself("init", str(project), "--force")
    assert result.code == 0, result.output
    assert "overwritten: .gitignore (nself's lines added, yours kept)" in result.out
    assert "every value kept" not in result.out


def test_a_folder_name_that_is_no_project_name_hints_name(
    tmp_path: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = nself("init", str(tmp_path / "123"))
    assert result.code == 2, result.output
    assert "error: invalid project name '123'" in result.err and "--name" in result.err
    monkeypatch.setattr("sys.stdin", io.StringIO("\nokname\n\n" + "n\n" * 20))
    result = nself("init", str(tmp_path / "123"), "--wizard")
    assert result.code == 0, result.output
    assert "[123]" not in result.out
    assert values(tmp_path / "123" / ".env.dev")["PROJECT_NAME"] == "okname"
