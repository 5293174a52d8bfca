"""The build summary lists where to open each service, the admin UI included."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]


def test_dev_summary_lists_the_admin_ui_url(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", ADMIN_ENABLED="true")
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert "    admin          http://127.0.0.1:3021" in result.out.splitlines()
    set_env(project, ".env.local", ADMIN_PORT="3999")
    data = json.loads(nself("build", "--json", cwd=project).out)
    assert data["urls"]["admin"] == "http://127.0.0.1:3999"
    assert data["urls"]["hasura"] == "https://api.local.nself.org"


def test_no_admin_url_when_it_is_off(project: Path, nself: Run) -> None:
    data = json.loads(nself("build", "--json", cwd=project).out)
    assert "admin" not in data["urls"]


def test_urls_says_so_when_nothing_is_routed(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", HASURA_ENABLED="false", AUTH_ENABLED="false")
    result = nself("urls", cwd=project)
    assert result.code == 0, result.output
    assert "no service is routed" in result.out and "--template" not in result.err
    assert json.loads(nself("urls", "--json", cwd=project).out) == {}
    set_env(project, ".env.local", HASURA_ENABLED="true")
    listed = nself("urls", cwd=project)
    assert "https://api.local.nself.org" in listed.out and "no service" not in listed.out
