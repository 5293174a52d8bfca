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
