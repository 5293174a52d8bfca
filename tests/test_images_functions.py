"""Functions start on a real first start: `nself init` scaffolds a working hello function
(package.json, lockfile, tsconfig.json), and the folder is mounted the way the image
expects: writable, with node_modules in a volume.

The functions stand-in (tests/standins/functions-start.sh) keeps nhost/functions' start
script: it exits without a package.json and a lockfile, and as root (every other
capability dropped) writes into the folder. The folder here belongs to another user, as
a developer's does. Its server is not Express and cannot install packages: the hello
function needs neither.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from docker_helpers import standin
from nself_sdk.testing import Result, set_env
from test_runtime_e2e import DOMAIN, https_get, stack  # noqa: F401

Run = Callable[..., Result]


def owned_by_a_user(folder: Path, uid: int = 1000) -> None:
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, uid, uid)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_the_scaffolded_hello_function_answers(
    stack: tuple[Path, str, int],  # noqa: F811
    nself: Run,
) -> None:
    folder, _name, https = stack
    assert (folder / "functions" / "package-lock.json").is_file()
    owned_by_a_user(folder / "functions")
    set_env(folder, ".env.local", FUNCTIONS_ENABLED="true", FUNCTIONS_IMAGE=standin("functions"))
    started = nself("start", "--with", "functions", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output
    code, body = https_get(https, f"functions.{DOMAIN}", "/hello?name=Ada")
    assert (code, body.strip()) == (200, "Hello, Ada!")
    assert not (folder / "functions" / "node_modules" / ".package-lock.json").exists()


def test_functions_without_package_json_or_lockfile_are_refused(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", FUNCTIONS_ENABLED="true")
    (project / "functions" / "package-lock.json").unlink()
    result = nself("build", cwd=project)
    assert result.code == 1
    assert "functions/ has no lockfile (package-lock.json or yarn.lock)" in result.err
    (project / "functions" / "package.json").unlink()
    result = nself("build", cwd=project)
    assert result.code == 1 and "functions/package.json does not exist" in result.err
    forced = nself("init", "--force", cwd=project)
    assert forced.code == 0, forced.output
    assert nself("build", cwd=project).code == 0
