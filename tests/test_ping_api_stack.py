"""The ping_api as the stack's CS_1 custom service, on the real Docker engine.

No container registry is reachable here, so the image is not built from
``plugin_registry/Dockerfile`` (python:3.12-slim + pip) but from the local Debian stand-in with the
same code and entry point (``python3 -m nself_registry.server``, configured by env). The
one compiled dependency that must match the stand-in's Python 3.13, cffi's backend, is
fetched as a wheel with pip (PyPI is reachable in CI).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import standin
from nself_registry import keys, licensing
from nself_sdk.testing import Result, set_env
from test_registry import Trust, trust  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.usefixtures("docker_engine")]
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "anyio",
    "click",
    "cryptography",
    "h11",
    "idna",
    "pluggy",
    "sniffio",
    "starlette",
    "typing_extensions.py",
    "uvicorn",
)


def cffi_for_standin(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob("cffi-*-cp313-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.13", "--implementation", "cp",
             "--platform", "manylinux2014_x86_64", "-d", str(cache), "cffi>=1.17"],
            check=True,
        )  # fmt: skip
        found = sorted(cache.glob("cffi-*-cp313-*.whl"))
    return found[-1]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, trust: Trust) -> Iterator[str]:  # noqa: F811
    ctx = tmp_path_factory.mktemp("ping-image")
    site = ctx / "site"
    site.mkdir()
    purelib = Path(sysconfig.get_paths()["purelib"])
    for name in PACKAGES:
        source = purelib / name
        if source.is_dir():
            shutil.copytree(source, site / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy(source, site / name)
    packages = ("kernel/nself", "plugin_sdk/nself_sdk", "builtin_plugins/nself_builtins")
    for package in (*packages, "plugin_registry/nself_registry"):
        shutil.copytree(ROOT / package, site / Path(package).name)
    wheel = cffi_for_standin(Path(tmp_path_factory.getbasetemp()).parent / "nself-wheels")
    zipfile.ZipFile(wheel).extractall(site)
    shutil.copy(trust.file, ctx / "trusted.json")
    (ctx / "Dockerfile").write_text(
        f"FROM {standin('base')}\n"
        "RUN ln -sf /bin/busybox /usr/local/bin/wget\n"
        "COPY site /app\nCOPY trusted.json /keys/trusted.json\n"
        "ENV PYTHONPATH=/app HOST=0.0.0.0 PORT=8001\n"
        "USER 65534\n"
        'CMD ["python3", "-m", "nself_registry.server"]\n'
    )
    tag = f"nself-test/ping-api:{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_ping_api_runs_as_cs1_on_the_stack(
    image: str,
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = (ROOT / "docs" / "plugins" / "licences.md").read_text()
    block = re.search(r"<!-- cs1-begin -->\n```sh\n(.*?)```", doc, re.S)
    assert block is not None
    lines = block.group(1).replace("nself/ping-api:latest", image)
    lines += "CS_1_ENV_NSELF_TEST_TRUSTED_KEYS=/keys/trusted.json\n"  # the test's licence keys
    with (project / ".env.dev").open("a") as out:
        out.write(lines)
    name = f"c2ping{uuid.uuid4().hex[:8]}"
    pem = base64.b64encode(keys.private_pem(trust.ping)).decode()
    set_env(project, ".env.local", PROJECT_NAME=name, PING_SIGNING_KEY=pem, PING_REVOKED="lic_gone")
    monkeypatch.setenv(keys.TEST_KEYS_VAR, str(trust.file))
    try:
        started = nself("start", "ping-api", "--timeout", "120", cwd=project)
        assert started.code == 0, started.output
        ids = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={name}",
             "--filter", "label=com.docker.compose.service=ping-api"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert len(ids) == 1
        info = json.loads(
            subprocess.run(["docker", "inspect", ids[0]], capture_output=True, check=True).stdout
        )[0]
        assert info["State"]["Health"]["Status"] == "healthy"
        assert not info["HostConfig"]["PortBindings"]  # internal only: nginx publishes it
        ip = next(iter(info["NetworkSettings"]["Networks"].values()))["IPAddress"]
        now = int(time.time())
        for lid, status in (("lic_ok", "valid"), ("lic_gone", "revoked")):
            key = licensing.issue(
                trust.license, lid, plugins=("ai",), issued=now - 5, expires=now + 3600
            )
            answer = licensing.ask(f"http://{ip}:8001", licensing.parse(key))
            assert answer["signed"]["status"] == status
    finally:
        nself("down", "--volumes", cwd=project)
        leftovers = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={name}"],
            capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        if leftovers:
            subprocess.run(["docker", "rm", "-f", *leftovers], capture_output=True)
