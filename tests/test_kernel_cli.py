"""The CLI root: version, help, exit codes, error lines, --debug, start-up imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nself import __version__
from nself_sdk.testing import Result

Run = Callable[..., Result]
# Never imported at start-up: commands that need them import them themselves.
HEAVY = (
    "docker",
    "httpx",
    "cryptography",
    "jinja2",
    "psycopg",
    "starlette",
    "rich",
    "boto3",
    "botocore",
    "yaml",
    "dotenv",
)


def imported_after(code: str) -> set[str]:
    """Top-level packages imported by a fresh interpreter running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=Path(__file__).parent
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split()[-1000:])


def test_version_flag_imports_neither_docker_nor_httpx() -> None:
    for entry in ("nself.launch", "nself.cli"):
        loaded = imported_after(f"from {entry} import main\nmain(['--version'])")
        assert not loaded & {"docker", "httpx", "typer", "pluggy", "yaml", "rich"}, loaded


def test_the_executable_answers_version_before_importing_the_cli() -> None:
    loaded = imported_after("from nself.launch import main\nmain(['-V'])")
    assert "nself" in loaded
    assert not loaded & {"typing", "pathlib", "json", "dataclasses"}, loaded


def test_version_flag_with_the_real_script_and_importtime(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("nself")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(script), "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"nself {__version__}"
    modules = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
    assert "docker" not in modules and "httpx" not in modules


def test_loading_every_plugin_imports_nothing_heavy() -> None:
    """Plugins are imported on every start-up: their module level must stay light."""
    loaded = imported_after(
        "from nself.cli import make_app, get_command\nget_command(make_app(), 'version')"
    )
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_version_command(nself: Run) -> None:
    result = nself("version")
    assert result.code == 0
    assert result.out.startswith(f"nself {__version__} (Python ")
    data = json.loads(nself("version", "--json").out)
    assert data["version"] == __version__
    names = {p["name"] for p in data["plugins"]}
    assert {"project", "postgres", "hasura", "auth", "nginx", "compose", "custom"} <= names


def test_help_is_grouped(nself: Run) -> None:
    result = nself("--help")
    assert result.code == 0
    assert "Project" in result.out
    for command in ("init", "build", "version"):
        assert command in result.out


@pytest.mark.parametrize("name", ["start", "doctor", "db", "deploy", "staging", "version"])
def test_only_the_invoked_command_is_converted(name: str) -> None:
    """Plugins add module-level Typer apps (top-level commands through an app without a
    name); a run converts only the command it executes, help sees every one, and the
    plugins' apps are left as they were for the next run in the same process."""
    from nself.cli import get_command, make_app

    assert list(get_command(make_app(), name).commands) == [name]
    everything = get_command(make_app()).commands
    assert {"init", "build", "start", "exec", "doctor", "db", "deploy", "staging"} <= set(
        everything
    )
    assert list(get_command(make_app(), "nope").commands) == list(everything)


def test_build_help_lists_its_options(nself: Run) -> None:
    result = nself("build", "--help")
    assert result.code == 0
    for option in ("--check", "--env", "--rollback", "--json"):
        assert option in result.out


@pytest.mark.parametrize(
    "args",
    [["no-such-command"], ["build", "--no-such-option"], ["init", "a", "b", "c"], []],
)
def test_usage_errors_exit_2(nself: Run, args: list[str], tmp_path: Path) -> None:
    result = nself(*args, cwd=tmp_path)
    assert result.code == 2
    assert "Traceback" not in result.output
    if args:
        assert result.err.startswith("error: ")
        assert "hint: see `nself" in result.err


def test_failures_exit_1_with_one_error_line_and_a_hint(nself: Run, tmp_path: Path) -> None:
    result = nself("build", cwd=tmp_path)
    assert result.code == 1
    lines = result.err.splitlines()
    assert lines[0].startswith("error: no nself project in ")
    assert lines[1].startswith("hint: ")
    assert len(lines) == 2


def test_debug_shows_the_traceback(nself: Run, tmp_path: Path) -> None:
    assert "Traceback" not in nself("build", cwd=tmp_path).err
    result = nself("--debug", "build", cwd=tmp_path)
    assert result.code == 1
    assert "Traceback (most recent call last)" in result.err
    assert "error: no nself project" in result.err


@pytest.mark.parametrize(
    "args",
    [["build", "--debug"], ["build", "--check", "--debug"], ["--debug", "build", "--json"]],
)
def test_debug_is_accepted_anywhere_on_the_command_line(
    nself: Run, tmp_path: Path, args: list[str]
) -> None:
    """The error hints say "rerun with --debug": `nself build --debug` must work too."""
    result = nself(*args, cwd=tmp_path)
    assert result.code == 1, result.output
    assert "Traceback (most recent call last)" in result.err
    assert "error: no nself project" in result.err and "No such option" not in result.err


def test_debug_after_a_double_dash_belongs_to_the_other_program() -> None:
    from nself.cli import _take_debug

    assert _take_debug(["exec", "db", "--", "cmd", "--debug"]) == (
        ["exec", "db", "--", "cmd", "--debug"],
        False,
    )
    assert _take_debug(["exec", "--debug", "db", "--", "--debug"]) == (
        ["exec", "db", "--", "--debug"],
        True,
    )


def test_a_bare_build_with_debug_runs_without_typer(project: Path) -> None:
    """`nself build --debug` keeps the fast path of a bare `nself build` (no Typer)."""
    probe = (
        "import os, sys\n"
        f"os.chdir({str(project)!r})\n"
        "from nself.launch import main\n"
        "main(['build', '--debug'])\n"
        "assert 'typer' not in sys.modules and 'click' not in sys.modules\n"
    )
    loaded = imported_after(probe)
    assert not loaded & {"typer", "click"}
    assert (project / "docker-compose.yml").is_file()


def test_project_option_points_at_a_project_elsewhere(
    project: Path, nself: Run, tmp_path: Path
) -> None:
    result = nself("-C", str(project), "build", "--json", cwd=tmp_path)
    assert result.code == 0, result.output
    assert json.loads(result.out)["project"] == "demo"


def test_build_runs_from_a_subfolder(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project / "migrations").code == 0
    assert (project / "docker-compose.yml").is_file()


def test_rollback_refuses_to_mix_with_check(project: Path, nself: Run) -> None:
    result = nself("build", "--rollback", "--check", cwd=project)
    assert result.code == 2 and result.err.startswith("error: ")


def test_bare_build_answers_like_the_parsed_command(
    project: Path, nself: Run, tmp_path: Path
) -> None:
    """`nself build` skips Typer (nothing to parse) and says exactly what `build` via Typer says."""
    nself("build", cwd=project)
    direct = nself("build", cwd=project)
    parsed = nself("-C", str(project), "build", cwd=tmp_path)
    assert (direct.code, direct.out, direct.err) == (parsed.code, parsed.out, parsed.err)
    assert "no changes" in direct.out
    outside = nself("build", cwd=tmp_path)
    via_typer = nself("-C", str(tmp_path), "build", cwd=tmp_path)
    assert outside.code == via_typer.code == 1
    assert outside.err == via_typer.err


def test_loading_the_plugins_for_a_build_imports_no_cli_framework() -> None:
    """A build loads every plugin module; their commands (and Typer) load only for the CLI."""
    loaded = imported_after("from nself.plugins import make_manager\nmake_manager()")
    assert not loaded & ({"typer", "click"} | set(HEAVY)), loaded & ({"typer"} | set(HEAVY))


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`nself version | head -0`: no traceback and no error line when the reader is gone."""
    read, write = os.pipe()
    os.close(read)
    script = Path(sys.executable).with_name("nself")
    done = subprocess.run([str(script), "version"], stdout=write, stderr=subprocess.PIPE)
    os.close(write)
    assert done.returncode == 1
    assert done.stderr == b""


@pytest.mark.parametrize("args", [("--debug", "--version"), ("--version", "--debug")])
def test_debug_does_not_break_version(args: tuple[str, ...], nself: Run) -> None:
    result = nself(*args)
    assert result.code == 0, result.output
    assert result.out.strip() == f"nself {__version__}"


@pytest.mark.parametrize(
    "args", [("-C", "x", "--version"), ("--project", ".", "--version"), ("-C", "x", "-V")]
)
def test_version_after_a_root_option_prints_the_version(args: tuple[str, ...], nself: Run) -> None:
    """The root's --help offers --version beside -C: given with it, it answers (it said
    "Missing command" and exited 2), before the project folder is looked at."""
    result = nself(*args)
    assert result.code == 0, result.output
    assert result.out.strip() == f"nself {__version__}" and result.err == ""


def test_a_project_folder_that_does_not_exist_is_named_so(tmp_path: Path, nself: Run) -> None:
    result = nself("-C", str(tmp_path / "nonexistent"), "build")
    assert result.code == 1, result.output
    assert f"error: {tmp_path / 'nonexistent'} does not exist" in result.err
    assert "parents" not in result.err


def test_an_empty_env_option_is_a_usage_error(project: Path, nself: Run) -> None:
    result = nself("build", "--env", "", cwd=project)
    assert result.code == 2, result.output
    assert "error: unknown environment ''" in result.err


@pytest.mark.parametrize(
    "args",
    [
        ("env", "status"),
        ("env", "show"),
        ("secrets", "generate"),
        ("secrets", "audit"),
        ("secrets", "rotate", "REDIS_PASSWORD", "--yes"),
    ],
)
def test_an_unknown_env_option_is_a_usage_error_everywhere(
    args: tuple[str, ...], project: Path, nself: Run
) -> None:
    before = sorted(p.name for p in project.iterdir())
    result = nself(*args, "--env", "qa", cwd=project)
    assert result.code == 2, result.output
    assert result.err.startswith("error: unknown environment 'qa' (--env)"), result.err
    assert sorted(p.name for p in project.iterdir()) == before


def test_a_build_without_plugin_sources_does_not_load_the_bundle_boundary(
    project: Path,
) -> None:
    """The bundles' rules (nself_builtins.shared.boundary, ~5 ms of imports) load only for
    a project whose Hasura serves a plugin's source: a plain build never needs them."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom nself.cli import main\ntry:\n    main(['build'])\n"
            "except SystemExit:\n    pass\n"
            "print('BOUNDARY', 'nself_builtins.shared.boundary' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=project,
    )
    assert "BOUNDARY False" in loaded.stdout, loaded.stdout + loaded.stderr
