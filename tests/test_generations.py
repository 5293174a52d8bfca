"""`nself build --rollback` and the generations the builtin generations plugin keeps.

Every guarantee is checked through the real CLI: a generation is complete or absent, the
project's first build is not rolled back, a damaged kept manifest is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kernel_helpers import tree
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]


def test_rollback_restores_the_previous_generation(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    first = tree(project)
    set_env(project, ".env.local", CS_1_NAME="pinger", CS_1_IMAGE="busybox", CS_1_PORT="8001")
    set_env(project, ".env.local", CS_1_SUBDOMAIN="ping")
    assert nself("build", cwd=project).code == 0
    assert (project / "nginx" / "sites" / "ping.conf").is_file()
    local = (project / ".env.local").read_text()
    result = nself("build", "--rollback", cwd=project)
    assert result.code == 0, result.output
    assert "removed: nginx/sites/ping.conf" in result.out
    after = tree(project)
    after.pop(".env.local")
    first.pop(".env.local")
    assert after == first
    assert (project / ".env.local").read_text() == local  # env files are not rolled back
    # Each rollback consumes one generation; the first build has none before it, and
    # undoing it would only delete the stack (and the dev certificate): refused.
    again = nself("build", "--rollback", cwd=project)
    assert again.code == 1 and "no earlier build" in again.err and "hint: " in again.err
    after_refusal = tree(project)
    after_refusal.pop(".env.local")
    assert after_refusal == first


def test_generations_are_bounded_and_private(project: Path, nself: Run) -> None:
    for size in range(1, 9):
        set_env(project, ".env.local", NGINX_CLIENT_MAX_BODY_SIZE=f"{size}m")
        assert nself("build", cwd=project).code == 0
    root = project / ".nself" / "generations"
    assert len(list(root.iterdir())) == 5
    assert root.stat().st_mode & 0o077 == 0
    kept = sorted(root.iterdir())[-1] / "files" / ".env.computed"
    assert kept.stat().st_mode & 0o777 == 0o600


def test_rollback_after_two_builds_walks_back_one_at_a_time(project: Path, nself: Run) -> None:
    states = []
    for size in ("1m", "2m", "3m"):
        set_env(project, ".env.local", NGINX_CLIENT_MAX_BODY_SIZE=size)
        assert nself("build", cwd=project).code == 0
        states.append(tree(project))
    for expected in (states[1], states[0]):
        assert nself("build", "--rollback", cwd=project).code == 0
        now = tree(project)
        assert {k: v for k, v in now.items() if k != ".env.local"} == {
            k: v for k, v in expected.items() if k != ".env.local"
        }


def test_rollback_after_a_failed_build_restores_the_build_before(
    project: Path, nself: Run, tmp_path: Path
) -> None:
    """A build that fails while writing leaves no half-kept generation behind: the rollback
    after it undoes the last successful build instead of removing every generated file."""
    assert nself("build", cwd=project).code == 0
    first = tree(project)
    set_env(project, ".env.local", REDIS_ENABLED="true")
    assert nself("build", cwd=project).code == 0
    compose = project / "docker-compose.yml"
    compose.rename(tmp_path / "dc")
    compose.mkdir()
    assert nself("build", cwd=project).code == 1
    kept = project / ".nself" / "generations"
    assert all((g / "build.json").is_file() for g in kept.iterdir() if g.name.isdigit())
    compose.rmdir()
    (tmp_path / "dc").rename(compose)
    result = nself("build", "--rollback", cwd=project)
    assert result.code == 0, result.output
    assert "redis" not in compose.read_text()
    assert (project / "nginx" / "ssl" / "local.nself.org.key").is_file()
    after = {k: v for k, v in tree(project).items() if k != ".env.local"}
    assert after == {k: v for k, v in first.items() if k != ".env.local"}


def test_rollback_skips_a_generation_without_its_manifest(project: Path, nself: Run) -> None:
    """An older nself could leave a generation folder without build.json; it is not a build."""
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", NGINX_CLIENT_MAX_BODY_SIZE="3m")
    assert nself("build", cwd=project).code == 0
    broken = project / ".nself" / "generations" / "000009"
    (broken / "files").mkdir(parents=True)
    (broken / "files" / "docker-compose.yml").write_text("half\n")
    result = nself("build", "--rollback", cwd=project)
    assert result.code == 0, result.output
    assert "restored: nginx/nginx.conf" in result.out
    assert (project / "docker-compose.yml").read_text() != "half\n"
    assert (project / "nginx" / "ssl" / "local.nself.org.crt").is_file()
    # The next build numbers past the leftover and clears it away.
    set_env(project, ".env.local", NGINX_CLIENT_MAX_BODY_SIZE="4m")
    assert nself("build", cwd=project).code == 0
    assert sorted(g.name for g in broken.parent.iterdir()) == ["000001", "000010"]


def test_rollback_refuses_a_damaged_kept_manifest(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", NGINX_CLIENT_MAX_BODY_SIZE="3m")
    assert nself("build", cwd=project).code == 0
    before = tree(project)
    (project / ".nself" / "generations" / "000002" / "build.json").write_text("{trunc")
    result = nself("build", "--rollback", cwd=project)
    assert result.code == 1 and "damaged" in result.err and "hint: " in result.err
    assert tree(project) == before


def test_a_hand_written_file_replaced_by_the_first_build_is_kept(project: Path, nself: Run) -> None:
    mine = project / "docker-compose.yml"
    mine.write_text("services: {}  # my own, from before nself\n")
    assert nself("build", cwd=project).code == 0
    assert "my own" not in mine.read_text()
    result = nself("build", "--rollback", cwd=project)
    assert result.code == 1 and "the project's first" in result.err
    where = ".nself/generations/000001/files/"
    assert f"hint: nothing was changed; the files that build replaced are kept in {where}" in (
        result.err
    )
    kept = project / where / "docker-compose.yml"
    assert kept.read_text() == "services: {}  # my own, from before nself\n"


def test_rolling_back_the_first_build_deletes_nothing(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    before = tree(project)
    result = nself("build", "--rollback", cwd=project)
    assert result.code == 1, result.output
    assert result.err.startswith("error: there is no earlier build to roll back to")
    assert "restored" not in result.out
    assert tree(project) == before
    assert (project / "nginx" / "ssl" / "local.nself.org.key").is_file()


def test_rollback_json_says_ok_like_every_json_answer(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", REDIS_ENABLED="true")
    assert nself("build", cwd=project).code == 0
    result = nself("build", "--rollback", "--json", cwd=project)
    assert result.code == 0, result.output
    data = json.loads(result.out)
    assert data["ok"] is True and data["rolled_back"]


def test_without_the_generations_plugin_builds_keep_nothing(
    project: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSELF_DISABLE_PLUGINS", "generations")
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", REDIS_ENABLED="true")
    assert nself("build", cwd=project).code == 0
    assert not (project / ".nself" / "generations").exists()
    before = tree(project)
    result = nself("build", "--rollback", cwd=project)
    assert result.code == 1 and "Traceback" not in result.output
    assert result.err.startswith("error: no plugin keeps previous builds")
    assert "hint: " in result.err
    assert tree(project) == before
