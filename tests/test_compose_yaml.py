"""The compose file the plugin writes (PyYAML) reads back exactly, in PyYAML and in Compose."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from docker_helpers import needs_docker
from kernel_helpers import compose_config
from nself_builtins.compose import dump_yaml as dump
from nself_sdk.testing import Result, set_env

TRICKY = [
    "",
    " ",
    "plain",
    "yes",
    "No",
    "ON",
    "null",
    "~",
    "true",
    "8080",
    "0x1F",
    "1e5",
    "010",
    ".inf",
    "-",
    "- item",
    "a: b",
    "a:b",
    "key:",
    "# not a comment",
    "x #y",
    "*alias",
    "&anchor",
    "!tag",
    "|",
    ">",
    "'single'",
    '"double"',
    "{json: 1}",
    '{"type":"HS256","key":"${HASURA_JWT_KEY}"}',
    "[1, 2]",
    "%percent",
    "@at",
    "`tick",
    "line\nbreak",
    "tab\there",
    "trailing ",
    " leading",
    "ünïcödé ✓",
    "back\\slash",
    "$$literal ${NAME}",
    "127.0.0.1:80:80/tcp",
    "http://user:p@ss@host:1/x?y=1&z",
    "2024-01-01",
    "12:30",
    "\x07bell",
]


def test_every_tricky_string_reads_back_as_itself() -> None:
    doc: dict[str, Any] = {
        "values": TRICKY,
        "mapping": {text or "empty-key": text for text in TRICKY},
        "keys": {text: 1 for text in TRICKY if text},
    }
    assert yaml.safe_load(dump(doc)) == doc


def test_nesting_numbers_booleans_and_empties() -> None:
    doc: dict[str, Any] = {
        "a": {"b": [{"c": 1, "d": [True, False, None]}, [1, [2, 3]], {}, []]},
        "e": 1.5,
        "f": {},
        "g": [],
        "h": [{"x": {"y": "z"}, "w": ["v"]}],
    }
    assert yaml.safe_load(dump(doc)) == doc


def test_output_is_deterministic_and_keeps_key_order() -> None:
    doc = {"z": "1", "a": {"q": "2", "b": "3"}}
    assert dump(doc) == dump(dict(doc))
    assert [line.split(":")[0] for line in dump(doc).splitlines()] == ["z", "a", "  q", "  b"]
    assert yaml.safe_load(dump(doc)) == doc


@needs_docker
def test_compose_reads_awkward_values_unchanged(
    project: Path, nself: Callable[..., Result]
) -> None:
    awkward = ["yes", "8080", "a: b", "# hash", "- dash", "{x}", "ünï ✓", "trailing "]
    for n, value in enumerate(awkward, 1):
        set_env(project, ".env.local", **{f"CS_1_ENV_V{n}": f"'{value}'"})
    set_env(project, ".env.local", CS_1_NAME="echo", CS_1_IMAGE="busybox", CS_1_PORT="8001")
    assert nself("build", cwd=project).code == 0, "build failed"
    env = compose_config(project)["services"]["echo"]["environment"]
    for n, value in enumerate(awkward, 1):
        assert env[f"V{n}"] == value


@pytest.mark.parametrize("text", ["yes", "No", "8080", "a: b", "-x", "ünï"])
def test_strings_that_look_like_other_types_stay_strings(text: str) -> None:
    assert yaml.safe_load(dump({"k": text})) == {"k": text}


# -- reuse: an unchanged stack is not rendered again ----------------------------------------


def compose_after_build(project: Path, nself: Callable[..., Result], *args: str) -> str:
    result = nself("build", *args, cwd=project)
    assert result.code == 0, result.output
    return (project / "docker-compose.yml").read_text()


def test_an_unchanged_stack_reuses_the_file_without_loading_yaml(
    project: Path, nself: Callable[..., Result]
) -> None:
    import subprocess
    import sys

    first = compose_after_build(project, nself)
    probe = (
        "import io, contextlib, sys\nfrom nself.launch import main\n"
        "with contextlib.redirect_stdout(io.StringIO()): main(['build'])\n"
        "print('yaml' in sys.modules, 'typer' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=project, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [b"False", b"False"]  # neither PyYAML nor Typer was needed
    assert (project / "docker-compose.yml").read_text() == first


def test_a_changed_stack_is_rendered_again(project: Path, nself: Callable[..., Result]) -> None:
    first = compose_after_build(project, nself)
    set_env(project, ".env.local", REDIS_ENABLED="true")
    second = compose_after_build(project, nself)
    assert second != first and "redis" in yaml.safe_load(second)["services"]
    set_env(project, ".env.local", REDIS_ENABLED="false")
    assert compose_after_build(project, nself) == first  # byte-identical again


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text.replace("restart: unless-stopped", "restart: always", 1),  # body
        lambda text: text.split("\n", 1)[1],  # header line gone
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "",
    ],
    ids=["edited-body", "edited-header", "truncated", "empty"],
)
def test_a_damaged_file_is_reported_and_rendered_again(
    project: Path, nself: Callable[..., Result], damage: Callable[[str], str]
) -> None:
    path = project / "docker-compose.yml"
    first = compose_after_build(project, nself)
    path.write_text(damage(first))
    check = nself("build", "--check", cwd=project)
    assert check.code == 1 and "docker-compose.yml" in check.out
    assert compose_after_build(project, nself) == first


# -- HEALTHCHECK_INTERVAL: one interval for every health check ------------------------------


@needs_docker
def test_healthcheck_interval_sets_every_check_and_a_bad_one_is_refused_at_its_line(
    project: Path, nself: Callable[..., Result]
) -> None:
    own = yaml.safe_load(compose_after_build(project, nself))["services"]
    assert {s["healthcheck"]["interval"] for s in own.values()} >= {"5s", "10s"}  # their own

    set_env(project, ".env.local", HEALTHCHECK_INTERVAL="1s")
    compose_after_build(project, nself)
    services = compose_config(project)["services"]  # as Compose reads it
    assert set(services) == set(own)
    for name, body in services.items():
        assert body["healthcheck"]["interval"] == "1s", name
        # only the interval: the test, timeout, retries and grace period stay each one's own
        written = yaml.safe_load((project / "docker-compose.yml").read_text())["services"]
        assert written[name]["healthcheck"] == own[name]["healthcheck"] | {"interval": "1s"}

    for bad in ("soon", "1", "0s", "-5s", "1h"):
        before = (project / "docker-compose.yml").read_text()
        set_env(project, ".env.local", HEALTHCHECK_INTERVAL=bad)
        r = nself("build", cwd=project)
        assert r.code == 1, r.output
        assert f"HEALTHCHECK_INTERVAL={bad!r} is not a duration" in r.err, r.err
        assert ".env.local:" in r.err and "hint:" in r.err and "Traceback" not in r.output
        assert (project / "docker-compose.yml").read_text() == before
