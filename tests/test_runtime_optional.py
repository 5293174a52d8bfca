"""`nself start` brings optional services up only when asked: `--with` or `--all`.

Real engine and Compose v2, with the stand-in images (Hasura and Auth are disabled by the
`stack` fixture because their images cannot be obtained here). Redis is the optional
service, run from the Redis stand-in image through `REDIS_IMAGE`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from docker_helpers import standin
from nself_sdk.testing import Result, set_env
from test_runtime_e2e import stack  # noqa: F401  (the fixture: unique project, torn down)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]


def states(nself: Run, folder: Path) -> dict[str, tuple[str, str]]:
    status = nself("status", "--json", cwd=folder)
    assert status.code == 0, status.output
    return {r["service"]: (r["state"], r["health"]) for r in json.loads(status.out)}


def test_optional_services_start_with_with_and_all(
    stack: tuple[Path, str, int],  # noqa: F811
    nself: Run,
) -> None:
    folder, _name, _https = stack
    set_env(folder, ".env.local", REDIS_ENABLED="true", REDIS_IMAGE=standin("redis"))

    plain = nself("start", "--timeout", "120", cwd=folder)
    assert plain.code == 0, plain.output
    assert states(nself, folder).get("redis", ("absent", ""))[0] != "running"

    added = nself("start", "--with", "redis", "--timeout", "120", cwd=folder)
    assert added.code == 0, added.output
    assert states(nself, folder)["redis"] == ("running", "healthy")

    assert nself("stop", "redis", cwd=folder).code == 0
    assert states(nself, folder).get("redis", ("absent", ""))[0] != "running"
    everything = nself("start", "--all", "--timeout", "120", cwd=folder)
    assert everything.code == 0, everything.output
    rows = states(nself, folder)
    assert rows["redis"] == ("running", "healthy")
    assert all(state == ("running", "healthy") for state in rows.values()), rows

    unknown = nself("start", "--with", "nosuchservice", cwd=folder)
    assert unknown.code in (1, 2) and "nosuchservice" in unknown.err
    assert "Traceback" not in unknown.output
