"""`nself init` and `nself build` through the real CLI: what lands on disk and what is said."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from docker_helpers import needs_docker
from kernel_helpers import compose_config, tree
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]


# -- init ------------------------------------------------------------------------------------


def test_init_scaffolds_a_project(tmp_path: Path, nself: Run) -> None:
    folder = tmp_path / "shop"
    result = nself("init", str(folder), "--name", "shop", "--domain", "shop.example.com")
    assert result.code == 0, result.output
    for name in (".env.dev", ".env.local", ".env.staging", ".env.prod", ".env.secrets"):
        assert (folder / name).is_file(), name
    assert (folder / ".env.secrets").stat().st_mode & 0o777 == 0o600
    # Folders come from the plugins that read them (contribute_scaffold), with a README.
    for readme in ("nginx/conf.d/README", "migrations/README", "seeds/README", "services/README"):
        assert (folder / readme).is_file(), readme
    assert (folder / "nginx" / "ssl" / ".gitignore").read_text().splitlines()[-2:] == [
        "*",
        "!.gitignore",
    ]
    ignored = (folder / ".gitignore").read_text().splitlines()
    for name in (".env.local", ".env.secrets", ".env.computed"):
        assert name in ignored
    dev = (folder / ".env.dev").read_text()
    assert "PROJECT_NAME=shop" in dev and "BASE_DOMAIN=shop.example.com" in dev


def test_init_generates_fresh_dev_secrets_every_time(tmp_path: Path, nself: Run) -> None:
    def secrets_of(folder: Path) -> dict[str, str]:
        lines = (folder / ".env.dev").read_text().splitlines()
        pairs = dict(line.split("=", 1) for line in lines if "=" in line and line[0] != "#")
        return {k: v for k, v in pairs.items() if k.endswith(("PASSWORD", "SECRET", "KEY"))}

    assert nself("init", str(tmp_path / "a")).code == 0
    assert nself("init", str(tmp_path / "b")).code == 0
    first, second = secrets_of(tmp_path / "a"), secrets_of(tmp_path / "b")
    assert set(first) >= {"POSTGRES_PASSWORD", "HASURA_GRAPHQL_ADMIN_SECRET", "HASURA_JWT_KEY"}
    for name, value in first.items():
        assert len(value) >= 32, name
        assert value != second[name], name


def test_init_refuses_to_clobber_without_force(project: Path, nself: Run) -> None:
    before = (project / ".env.dev").read_text()
    set_env(project, ".env.secrets", REAL="keep-me")
    result = nself("init", str(project))
    assert result.code == 1
    assert result.err.startswith("error: ") and "--force" in result.err
    assert (project / ".env.dev").read_text() == before
    result = nself("init", str(project), "--force")
    assert result.code == 0, result.output
    assert (project / ".env.dev").read_text() == before  # values (and dev secrets) kept
    assert "REAL=keep-me" in (project / ".env.secrets").read_text()  # never thrown away


def test_init_keeps_the_projects_own_scaffold_files(tmp_path: Path, nself: Run) -> None:
    folder = tmp_path / "own"
    (folder / "migrations").mkdir(parents=True)
    (folder / "migrations" / "README").write_text("our own notes\n")
    assert nself("init", str(folder)).code == 0
    assert nself("init", str(folder), "--force").code == 0
    assert (folder / "migrations" / "README").read_text() == "our own notes\n"


def test_init_keeps_an_existing_gitignore(tmp_path: Path, nself: Run) -> None:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / ".gitignore").write_text("node_modules/\n.env.local\n")
    assert nself("init", str(folder)).code == 0
    lines = (folder / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["node_modules/", ".env.local"]
    assert lines.count(".env.local") == 1 and ".env.secrets" in lines


@pytest.mark.parametrize(
    ("args", "expect"),
    [(["--name", "Bad Name!"], "invalid project name"), (["--domain", "no_dots"], "domain")],
)
def test_init_rejects_bad_names_as_usage_errors(
    tmp_path: Path, nself: Run, args: list[str], expect: str
) -> None:
    result = nself("init", str(tmp_path / "x"), *args)
    assert result.code == 2
    assert result.err.startswith("error: ") and expect in result.err
    assert not (tmp_path / "x" / ".env.dev").exists()


def test_init_wizard_asks(tmp_path: Path, nself: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    answers = "wizardapp\nwiz.example.com\n" + "n\n" * 20
    monkeypatch.setattr("sys.stdin", io.StringIO(answers))
    result = nself("init", str(tmp_path / "w"), "--wizard")
    assert result.code == 0, result.output
    assert "Project name" in result.out and "Base domain" in result.out
    dev = (tmp_path / "w" / ".env.dev").read_text()
    assert "PROJECT_NAME=wizardapp" in dev and "BASE_DOMAIN=wiz.example.com" in dev


# -- build -----------------------------------------------------------------------------------


def test_two_builds_are_byte_identical(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    first = tree(project)
    second_run = nself("build", "--json", cwd=project)
    assert second_run.code == 0
    assert json.loads(second_run.out)["changes"] == {}
    assert tree(project) == first
    # A fresh copy of the same config builds the same bytes (the dev certificate aside).
    assert b"nself build" in first["docker-compose.yml"]


def test_same_config_in_two_folders_gives_the_same_files(tmp_path: Path, nself: Run) -> None:
    for name in ("one", "two"):
        assert nself("init", str(tmp_path / name), "--name", "same").code == 0
    (tmp_path / "two" / ".env.dev").write_text((tmp_path / "one" / ".env.dev").read_text())
    for name in ("one", "two"):
        assert nself("build", cwd=tmp_path / name).code == 0
    skip = (".nself/", "nginx/ssl/", ".env.dev")
    assert tree(tmp_path / "one", skip) == tree(tmp_path / "two", skip)


def test_build_summary_names_services_urls_and_changes(project: Path, nself: Run) -> None:
    first = nself("build", cwd=project)
    assert first.code == 0
    assert "services: auth, hasura, nginx, postgres" in first.out
    assert "https://api.local.nself.org" in first.out
    assert "created  docker-compose.yml" in first.out
    set_env(project, ".env.local", NGINX_CLIENT_MAX_BODY_SIZE="5m")
    second = nself("build", cwd=project)
    assert "changed  nginx/nginx.conf" in second.out
    assert "docker-compose.yml" not in second.out


def test_build_json_summary(project: Path, nself: Run) -> None:
    result = nself("build", "--json", cwd=project)
    data = json.loads(result.out)
    assert data["env"] == "dev" and data["project"] == "demo"
    assert data["services"] == ["auth", "hasura", "nginx", "postgres"]
    assert data["urls"]["hasura"] == "https://api.local.nself.org"
    assert data["changes"]["docker-compose.yml"] == "created"
    # up_to_date: the files on disk match the configuration now, i.e. after the write.
    assert data["up_to_date"] is True and data["ok"] is True
    assert json.loads(nself("build", "--check", "--json", cwd=project).out)["up_to_date"]
    set_env(project, ".env.local", NGINX_CLIENT_MAX_BODY_SIZE="9m")
    stale = nself("build", "--check", "--json", cwd=project)
    assert stale.code == 1
    data = json.loads(stale.out)  # one object: the summary, saying why it failed
    assert (data["ok"], data["up_to_date"]) == (False, False)
    assert data["error"] == "generated files are out of date" and data["changes"]
    again = json.loads(nself("build", "--json", cwd=project).out)
    assert again["up_to_date"] is True and again["changes"]["nginx/nginx.conf"] == "changed"


def test_a_failing_build_with_json_still_answers_with_an_object(project: Path, nself: Run) -> None:
    """Scripts read stdout: a failure under --json is {"ok": false, "error", "hint", ...}
    there (plus the usual lines on stderr and exit 1)."""
    (project / ".env.local").write_text("A=1\nURL=http://${NO_SUCH_HOST}/x\n")
    for args in (
        ("build", "--json"),
        ("build", "--check", "--json"),
        ("--debug", "build", "--json"),
    ):
        result = nself(*args, cwd=project)
        assert result.code == 1, result.output
        data = json.loads(result.out)
        assert data["ok"] is False
        assert data["error"].startswith(".env.local:2: URL refers to undefined variable")
        assert data["hint"].startswith("define NO_SUCH_HOST")
        assert data["problems"] == [
            {"level": "error", "message": data["error"], "hint": data["hint"]}
        ]
        assert "error: .env.local:2: " in result.err
    # Every problem a validation finds is in the object, not only the first one.
    (project / ".env.local").write_text("RATE_LIMIT_AUTH=fast\nNGINX_HTTPS_PORT=99999\n")
    refused = nself("build", "--json", cwd=project)
    assert refused.code == 1
    problems = json.loads(refused.out)["problems"]
    assert len(problems) == refused.err.count("error: ") >= 2
    # A usage error too (exit 2), and a command that needs no project.
    usage = nself("build", "--json", "--no-such-option", cwd=project)
    assert usage.code == 2 and json.loads(usage.out)["ok"] is False
    assert "no-such-option" in json.loads(usage.out)["error"]


def test_failing_build_writes_nothing(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", NGINX_CLIENT_MAX_BODY_SIZE="6m", RATE_LIMIT_AUTH="fast")
    before = {p: (project / p).stat().st_mtime_ns for p in tree(project)}
    result = nself("build", cwd=project)
    assert result.code == 1 and "RATE_LIMIT_AUTH" in result.err
    assert {p: (project / p).stat().st_mtime_ns for p in tree(project)} == before


def test_writes_are_atomic_and_leave_no_temp_files(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    inode = (project / "docker-compose.yml").stat().st_ino
    set_env(project, ".env.local", POSTGRES_IMAGE="example/postgres:16")
    assert nself("build", cwd=project).code == 0
    # Replaced by rename (a reader holding the old file never sees half a file).
    assert (project / "docker-compose.yml").stat().st_ino != inode
    assert not [p for p in project.rglob("*.tmp")]


def test_conf_d_is_never_touched_and_included_last(project: Path, nself: Run) -> None:
    own = project / "nginx" / "conf.d" / "custom.conf"
    own.write_text("# mine\nmap $host $mine { default 1; }\n")
    os.utime(own, ns=(1_000_000_000, 1_000_000_000))
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", NGINX_CLIENT_MAX_BODY_SIZE="7m")
    assert nself("build", cwd=project).code == 0
    assert own.read_text() == "# mine\nmap $host $mine { default 1; }\n"
    assert own.stat().st_mtime_ns == 1_000_000_000
    conf = (project / "nginx" / "nginx.conf").read_text()
    includes = [line.strip() for line in conf.splitlines() if line.strip().startswith("include")]
    assert includes[-1].endswith("conf.d/*.conf;")


def test_check_writes_nothing_and_fails_when_out_of_date(project: Path, nself: Run) -> None:
    before = tree(project)
    result = nself("build", "--check", cwd=project)
    assert result.code == 1
    assert "out of date" in result.err and "would be created: docker-compose.yml" in result.out
    assert tree(project) == before and not (project / ".nself").exists()
    assert nself("build", cwd=project).code == 0
    assert nself("build", "--check", cwd=project).code == 0
    set_env(project, ".env.local", NGINX_CLIENT_MAX_BODY_SIZE="8m")
    stale = nself("build", "--check", "--json", cwd=project)
    assert stale.code == 1
    changes = json.loads(stale.out)["changes"]
    assert changes == {".env.computed": "changed", "nginx/nginx.conf": "changed"}


@pytest.mark.parametrize("check", [False, True])
@pytest.mark.parametrize(
    ("path", "make", "expect"),
    [
        ("docker-compose.yml", "folder", "docker-compose.yml is a folder, where nself build"),
        (".env.computed", "folder", ".env.computed is a folder, where nself build"),
        ("nginx/sites", "file", "nginx/sites is a file, where nself build needs a folder"),
    ],
)
def test_something_in_the_way_of_a_generated_file_is_one_clear_error(
    project: Path, nself: Run, tmp_path: Path, check: bool, path: str, make: str, expect: str
) -> None:
    """A folder where a generated file belongs (or a file where its folder belongs): the
    build and --check name the path with a hint, write nothing and keep no generation."""
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", REDIS_ENABLED="true")
    (project / path).rename(tmp_path / "moved")
    if make == "folder":
        # Mode 0644 like the generated file: --check then has to look inside.
        (project / path).mkdir(mode=0o644 if path == "docker-compose.yml" else 0o700)
    else:
        (project / path).write_text("in the way\n")
    before = tree(project, skip=())
    result = nself("build", *(["--check"] if check else []), cwd=project)
    assert result.code == 1, result.output
    lines = result.err.splitlines()
    assert lines[0].startswith(f"error: {expect}"), result.err
    assert lines[1] == f"hint: move {path} out of the way and run the build again"
    assert len(lines) == 2 and "Traceback" not in result.output
    assert tree(project, skip=()) == before  # nothing written, no generation kept
    (project / path).chmod(0o700)


def test_a_file_where_the_state_folder_belongs_is_one_clear_error(
    project: Path, nself: Run
) -> None:
    (project / ".nself").write_text("in the way\n")
    result = nself("build", cwd=project)
    assert result.code == 1, result.output
    assert result.err.splitlines()[0] == (
        "error: .nself (or a folder above it) is a file, where nself needs a folder"
    )
    assert "hint: " in result.err and "unexpected" not in result.err
    assert not (project / "docker-compose.yml").exists()


def test_check_fails_on_invalid_config(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", NGINX_HTTPS_PORT="99999")
    result = nself("build", "--check", cwd=project)
    assert result.code == 1 and "NGINX_HTTPS_PORT" in result.err


def test_check_notices_a_hand_edited_file(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    compose = project / "docker-compose.yml"
    compose.write_text(compose.read_text() + "# edited\n")
    assert nself("build", "--check", cwd=project).code == 1
    assert nself("build", cwd=project).code == 0
    assert "# edited" not in compose.read_text()


def test_a_file_no_longer_generated_is_removed(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", CS_1_NAME="pinger", CS_1_IMAGE="busybox", CS_1_PORT="8001")
    set_env(project, ".env.local", CS_1_SUBDOMAIN="ping")
    assert nself("build", cwd=project).code == 0
    assert (project / "nginx" / "sites" / "ping.conf").is_file()
    set_env(project, ".env.local", CS_1_NAME="")
    result = nself("build", cwd=project)
    assert "removed  nginx/sites/ping.conf" in result.out
    assert not (project / "nginx" / "sites" / "ping.conf").exists()


@needs_docker
def test_compose_accepts_the_build_and_publishes_only_nginx(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    services = compose_config(project)["services"]
    published = {name: s.get("ports", []) for name, s in services.items() if s.get("ports")}
    assert set(published) == {"nginx"}
    assert {p["host_ip"] for p in published["nginx"]} == {"127.0.0.1"}  # dev default


def test_a_formerly_generated_file_edited_by_hand_is_left_alone(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", CS_1_NAME="shop", CS_1_IMAGE="busybox", CS_1_PORT="8001",
            CS_1_SUBDOMAIN="shop")  # fmt: skip
    assert nself("build", cwd=project).code == 0
    site = project / "nginx" / "sites" / "shop.conf"
    untouched = project / "nginx" / "sites" / "auth.conf"
    site.write_text(site.read_text() + "# my note\n")
    set_env(project, ".env.local", CS_1_NAME="", AUTH_ENABLED="false")
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert site.is_file() and "# my note" in site.read_text()  # someone's own now: kept
    assert not untouched.exists() and "removed  nginx/sites/auth.conf" in result.out
