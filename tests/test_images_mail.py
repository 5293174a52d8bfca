"""A sign-up's verification mail reaches the dev mail catcher, as Auth sends it.

hasura-auth and Mailpit cannot be obtained here. Their stand-ins keep what decides
whether the mail arrives (tests/standins/auth-server.py, mailpit-server.py): Auth's
mailer always logs in and refuses to over plaintext unless the host is "mailhog",
"localhost", "127.0.0.1" or "::1"; Mailpit answers AUTH with 502 unless told to accept
any login, and refuses that over plaintext unless allowed to be insecure. The stand-in
Auth sends the mail its sign-up would (`send-verification`) with exactly the environment
the generated Compose file gives the auth service; what the real Auth does before that
(database, Hasura) is not imitated.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import remove_project, standin, use_standins
from nself_sdk.testing import Result, set_env

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]


@pytest.fixture
def mail_stack(tmp_path: Path, nself: Run) -> Iterator[Path]:
    name = f"nselfmail{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    assert nself("init", str(folder), "--name", name).code == 0
    use_standins(folder)
    set_env(
        folder,
        ".env.local",
        HASURA_ENABLED="true",  # Auth needs it in the configuration; it is not started
        AUTH_ENABLED="true",
        AUTH_IMAGE=standin("auth"),
        MAIL_ENABLED="true",
        MAIL_IMAGE=standin("mailpit"),
    )
    try:
        yield folder
    finally:
        remove_project(name)


def compose(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["docker", "compose", "--env-file", ".env.computed", *args]
    return subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=120)


def test_a_sign_up_mail_reaches_the_dev_catcher(mail_stack: Path, nself: Run) -> None:
    folder = mail_stack
    started = nself("start", "mail", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output

    sent = compose(
        folder, "run", "--rm", "--no-deps", "auth", "send-verification", "ada@example.com"
    )
    # `compose run` exits 0 here whatever the container does (Compose 2.40 on this
    # engine), so the stand-in's own words decide.
    said = sent.stdout + sent.stderr
    assert "verification mail sent to ada@example.com" in said, said

    listed = compose(
        folder, "exec", "-T", "mail", "curl", "-fsS", "http://127.0.0.1:8025/api/v1/messages"
    )
    assert listed.returncode == 0, listed.stderr
    messages = json.loads(listed.stdout)["messages"]
    assert [(m["To"][0]["Address"], m["Subject"]) for m in messages] == [
        ("ada@example.com", "Verify your email")
    ]
