"""Numbers in settings and options are ASCII digits (the scaling ones of issue 15, the
backup schedule and the deploy bounds).

Python's ``str.isdigit`` and the regular expression ``\\d`` take any Unicode digit: a
superscript two passed the check and then broke ``int()`` (an unexpected ValueError
instead of one line and a hint), and an Arabic-Indic five passed whole into nginx's and
the sentinels' configuration files, which take only ASCII digits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]
SUPERSCRIPT_TWO = "\u00b2"
ARABIC_FIVE = "\u0665"


@pytest.mark.parametrize(
    ("values", "said"),
    [
        (
            {"CS_1_NAME": "web", "CS_1_IMAGE": "web:1", "CS_1_PORT": "8080",
             "CS_1_REPLICAS": SUPERSCRIPT_TWO},
            "is not a number of replicas",
        ),
        (
            {"CS_1_NAME": "web", "CS_1_IMAGE": "web:1", "CS_1_PORT": "8080",
             "CS_1_REPLICAS": ARABIC_FIVE},
            "is not a number of replicas",
        ),
        (
            {"NGINX_UPSTREAM_APP_SERVERS": "a:80,b:80",
             "NGINX_UPSTREAM_APP_WEIGHTS": f"1,{SUPERSCRIPT_TWO}"},
            "is not a weight",
        ),
        (
            {"NGINX_UPSTREAM_APP_SERVERS": "a:80", "NGINX_UPSTREAM_APP_MAX_FAILS": ARABIC_FIVE},
            "is not a number from 0",
        ),
        (
            {"NGINX_UPSTREAM_APP_SERVERS": "a:80",
             "NGINX_UPSTREAM_APP_FAIL_TIMEOUT": f"1{ARABIC_FIVE}s"},
            "FAIL_TIMEOUT",
        ),
        (
            {"REDIS_ENABLED": "true", "REDIS_SENTINEL_ENABLED": "true",
             "REDIS_SENTINEL_DOWN_AFTER_MS": ARABIC_FIVE * 4},
            "not 1000-600000",
        ),
        ({"BACKUP_SCHEDULE": f"*/{SUPERSCRIPT_TWO} * * * *"}, "bad step"),
        ({"BACKUP_SCHEDULE": f"{ARABIC_FIVE} 3 * * *"}, "is outside 0-59"),
        ({"DEPLOY_PORT": SUPERSCRIPT_TWO * 2}, "DEPLOY_PORT"),
    ],
)  # fmt: skip
def test_settings_with_other_digits_are_refused_by_the_build(
    nself_project: Path, nself: Run, values: dict[str, str], said: str
) -> None:
    set_env(nself_project, **values)
    r = nself("build", cwd=nself_project)
    assert r.code == 1, r.output
    assert said in r.err and "hint:" in r.err and "unexpected" not in r.err, r.err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--server", f"a:{SUPERSCRIPT_TWO}"], "is not a number from 1 to 65535"),
        (["--server", f"a:8{ARABIC_FIVE}"], "is not a number from 1 to 65535"),
        (["--server", "a:80", "--fail-timeout", f"1{ARABIC_FIVE}s"], "is not a time"),
    ],
)
def test_upstream_options_with_other_digits_are_one_line(
    nself_project: Path, nself: Run, args: list[str], said: str
) -> None:
    before = (nself_project / ".env.dev").read_text()
    r = nself("nginx", "upstream", "add", "app", *args, cwd=nself_project)
    assert r.code == 2, r.output
    assert said in r.err and "hint:" in r.err and "unexpected" not in r.err, r.err
    assert (nself_project / ".env.dev").read_text() == before
