"""A staging or prod build on a laptop goes to that target's own folder
(`.nself/targets/ENV`), never over the local stack's generated files or its trusted dev
certificate; `nself deploy ENV` ships that folder's build, `nself start --env ENV` refuses
before building anything.

The seed's flow, `nself env switch staging && nself build && nself staging deploy`, must
leave the local stack exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import docker, standin_stack
from kernel_helpers import mail_server
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]
TARGET = Path(".nself/targets/staging")


def local_files(project: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the project outside nself's state folder: content and mode."""
    return {
        p.relative_to(project).as_posix(): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in sorted(project.rglob("*"))
        if p.is_file() and ".nself" not in p.relative_to(project).parts
    }


def staging_ready(project: Path, nself: Run) -> None:
    assert nself("secrets", "generate", "--env", "staging", cwd=project).code == 0
    mail_server(project, ".env.secrets.staging")


def test_the_seed_flow_leaves_the_local_build_as_it_was(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    staging_ready(project, nself)
    before = local_files(project)
    assert "nginx/ssl/local.nself.org.key" in before  # the trusted dev certificate

    assert nself("env", "switch", "staging", cwd=project).code == 0
    built = nself("build", cwd=project)
    assert built.code == 0, built.output
    assert f"files:    {TARGET.as_posix()}/" in built.out
    assert {k: v for k, v in local_files(project).items() if k != ".env.secrets.staging"} == {
        k: v for k, v in before.items() if k != ".env.secrets.staging"
    }
    target = project / TARGET
    compose = (target / "docker-compose.yml").read_text()
    assert "grafana" in compose  # staging's stack (monitoring is on there), not local's
    assert "grafana" not in (project / "docker-compose.yml").read_text()
    assert (target / ".env.computed").stat().st_mode & 0o777 == 0o600
    assert "ENV=staging" in (target / ".env.computed").read_text()
    assert "ENV=dev" in (project / ".env.computed").read_text()
    data = json.loads(nself("build", "--json", cwd=project).out)
    assert data["folder"] == TARGET.as_posix() and data["changes"] == {}
    # Both targets' builds are current, each in its own folder.
    assert nself("build", "--check", cwd=project).code == 0
    assert nself("build", "--check", "--env", "local", cwd=project).code == 0
    status = json.loads(nself("env", "status", "--json", cwd=project).out)
    assert status["last_build_env"] == "staging" and not status["out_of_date"]

    # start --env staging refuses at once: nothing built, nothing contacted.
    set_env(project, ".env.staging", MY_NOTE="changed")
    refused = nself("start", "--env", "staging", cwd=project)
    assert refused.code == 1 and "no staging server is configured" in refused.err
    # switched to staging, a plain `nself start` is refused too: the hint names the local one
    plain = nself("start", cwd=project)
    assert plain.code == 1 and "`nself start --env local` runs the local stack" in plain.err
    assert "ENV=staging" in (target / ".env.computed").read_text()
    assert "MY_NOTE" not in (target / ".env.computed").read_text()  # not rebuilt either

    # Asked about another target, the hint builds that target, not the current one.
    assert nself("env", "switch", "local", cwd=project).code == 0
    stale = nself("build", "--check", "--env", "staging", cwd=project)
    assert stale.code == 1 and "run `nself build --env staging`" in stale.err, stale.output
    assert nself("env", "switch", "staging", cwd=project).code == 0

    # Rolling back staging's build rolls back staging's folder only.
    assert nself("build", cwd=project).code == 0
    assert "MY_NOTE=changed" in (target / ".env.computed").read_text()
    rolled = nself("build", "--rollback", cwd=project)
    assert rolled.code == 0, rolled.output
    assert "MY_NOTE" not in (target / ".env.computed").read_text()
    assert {k: v for k, v in local_files(project).items() if not k.startswith(".env.s")} == {
        k: v for k, v in before.items() if not k.startswith(".env.s")
    }

    # The secrets audit looks at every target's resolved env.
    (target / ".env.computed").chmod(0o644)
    audit = nself("secrets", "audit", "--json", cwd=project)
    readable = [f for f in json.loads(audit.out)["findings"] if f["kind"] == "readable"]
    assert any(TARGET.as_posix() in f["where"] for f in readable), audit.out


@pytest.fixture
def local_stack(tmp_path: Path, nself: Run) -> Iterator[tuple[Path, str]]:
    with standin_stack(nself, tmp_path, "nselftarget") as s:
        yield s.folder, s.name


def containers(name: str) -> dict[str, str]:
    """The project's containers: id -> creation time."""
    ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={name}").stdout
    return {c["Id"]: c["Created"] for c in json.loads(docker("inspect", *ids.split()).stdout)}


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_a_running_local_stack_is_left_alone(local_stack: tuple[Path, str], nself: Run) -> None:
    folder, name = local_stack
    started = nself("start", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output
    running = containers(name)
    files = local_files(folder)
    staging_ready(folder, nself)
    assert nself("env", "switch", "staging", cwd=folder).code == 0
    assert nself("build", cwd=folder).code == 0
    assert nself("env", "switch", "local", cwd=folder).code == 0
    again = nself("start", "--timeout", "120", cwd=folder)
    assert again.code == 0, again.output
    assert "rebuilt" not in again.out  # the local stack's files were never rewritten
    assert containers(name) == running  # nothing was recreated
    assert {k: v for k, v in local_files(folder).items() if not k.startswith(".env.s")} == {
        k: v for k, v in files.items() if not k.startswith(".env.s")
    }
