"""The compose file the plugin writes (PyYAML) reads back exactly, in PyYAML and in Compose."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Result, needs_docker, set_env
from kernel_helpers import compose_config
from nself_builtins.compose import dump_yaml as dump

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
