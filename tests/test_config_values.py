"""Setting values that reach nginx, Compose and public URLs: refused with file:line when they
would break or inject into the generated configuration, through the real CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, set_env

Run = Callable[..., Result]

SLOT = {"CS_1_NAME": "a", "CS_1_IMAGE": "x:1", "CS_1_PORT": "8001"}


def lines_of(project: Path, file: str = ".env.local") -> int:
    return len((project / file).read_text().splitlines())


# -- F2: nothing from an env file can inject into the nginx configuration ---------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CS_1_SUBDOMAIN", "a;b"),
        ("CS_1_SUBDOMAIN", "has space"),
        ("CS_1_SUBDOMAIN", "Bad_Sub"),
        ("CS_1_SUBDOMAIN", "api.v2"),
        ("CS_1_SUBDOMAIN", "-edge"),
        ("CS_1_SUBDOMAIN", "x" * 64),
        ("BASE_DOMAIN", "a;b.com"),
        ("BASE_DOMAIN", "Example.com"),
        ("BASE_DOMAIN", "a..com"),
        ("HASURA_SUBDOMAIN", "x;y"),
        ("AUTH_SUBDOMAIN", "a}b"),
        ("STORAGE_SUBDOMAIN", 'a"b'),
        ("STORAGE_CONSOLE_SUBDOMAIN", "a{"),
        ("FUNCTIONS_SUBDOMAIN", "f n"),
        ("SEARCH_SUBDOMAIN", "s;"),
        ("MAIL_SUBDOMAIN", "m'"),
        ("GRAFANA_SUBDOMAIN", "g#x"),
        ("NGINX_CLIENT_MAX_BODY_SIZE", "1m;evil"),
        ("NGINX_CLIENT_MAX_BODY_SIZE", "10 m"),
        ("STORAGE_MAX_BODY_SIZE", "5g;}"),
    ],
)
def test_values_that_would_break_nginx_are_refused_with_file_and_line(
    project: Path, nself: Run, name: str, value: str
) -> None:
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", **SLOT, STORAGE_ENABLED="true", **{name: value})
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    assert f"error: .env.local:{lines_of(project)}: {name}={value!r} is not a" in result.err
    assert "hint: " in result.err and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CS_1_SUBDOMAIN", "ping-2"),
        ("BASE_DOMAIN", "shop.example.com"),
        ("HASURA_SUBDOMAIN", "graphql"),
        ("NGINX_CLIENT_MAX_BODY_SIZE", "512k"),
        ("STORAGE_MAX_BODY_SIZE", "10G"),
    ],
)
def test_valid_values_still_build(project: Path, nself: Run, name: str, value: str) -> None:
    set_env(project, ".env.local", **SLOT, STORAGE_ENABLED="true", **{name: value})
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    sites = "".join(p.read_text() for p in (project / "nginx").rglob("*.conf"))
    assert value in sites
