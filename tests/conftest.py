"""The suite's own fixtures. The CLI runner, throw-away projects, env values and plugin
stacks come from nself's pytest plugin (nself_sdk.testing), as they do for plugin authors;
helpers for container tests are in docker_helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_helpers import docker_ok


@pytest.fixture
def project(nself_project: Path) -> Path:
    """A freshly initialised project folder (the plugin's ``nself_project``)."""
    return nself_project


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[None]:
    if not docker_ok():
        pytest.fail("the Docker engine is not running (scripts/test starts it as root)")
    yield
