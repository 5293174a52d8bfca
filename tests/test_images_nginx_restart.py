"""`nself restart nginx` (and `restart`, `start`) with a broken nginx/conf.d file is refused
before anything is stopped: the running nginx keeps serving. Before, the restart took all
public traffic down (nginx crash-looped on the new file).

Real engine, Compose v2 and the nginx stand-in (Debian's nginx 1.26).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nself_sdk.testing import Result
from test_runtime_e2e import DOMAIN, container_of, https_get, stack  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]


def test_a_broken_override_never_takes_nginx_down(
    stack: tuple[Path, str, int],  # noqa: F811
    nself: Run,
) -> None:
    folder, name, https = stack
    started = nself("start", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output
    before = container_of(name, "nginx")

    broken = folder / "nginx" / "conf.d" / "broken.conf"
    broken.write_text("server {\n    listen 443 ssl;\n    no_such_directive on;\n}\n")
    for argv in (("restart", "nginx"), ("restart",), ("start",)):
        refused = nself(*argv, "--timeout", "60", cwd=folder)
        assert refused.code == 1, (argv, refused.output)
        assert "nginx configuration is invalid, nothing was restarted" in refused.err
        assert "nginx/conf.d/broken.conf:3" in refused.err
        now = container_of(name, "nginx")
        assert (now["Id"], now["State"]["StartedAt"]) == (
            before["Id"],
            before["State"]["StartedAt"],
        )
        assert https_get(https, f"echo.{DOMAIN}")[0] == 200

    broken.unlink()
    restarted = nself("restart", "nginx", "--timeout", "120", cwd=folder)
    assert restarted.code == 0, restarted.output
    assert container_of(name, "nginx")["State"]["StartedAt"] != before["State"]["StartedAt"]
    assert https_get(https, f"echo.{DOMAIN}")[0] == 200
