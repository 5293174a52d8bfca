"""One writer at a time: the build (and its rollback) and the plugin store take their lock
through one helper, ``nself_sdk.locks``; a second process finds it held and is refused at
once, with nothing written, and the lock goes with a process that dies."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from nself_sdk.locks import exclusive
from plugin_helpers import make_bundle


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """nself in a process of its own: the lock is held by this one."""
    return subprocess.run(
        [sys.executable, "-m", "nself", *args],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_build_while_another_writes_the_project_is_refused_at_once(project: Path) -> None:
    with exclusive(project / ".nself" / "build.lock", "held", "by the test"):
        started = time.monotonic()
        refused = cli(project, "build")
        waited = time.monotonic() - started
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.splitlines() == [
        "error: another `nself build` is writing this project right now",
        "hint: wait for it to finish and run the command again",
    ]
    assert waited < 60  # refused, not queued behind the holder
    assert not (project / "docker-compose.yml").exists()
    assert cli(project, "build").returncode == 0  # free again
    with exclusive(project / ".nself" / "build.lock", "held", "by the test"):
        rollback = cli(project, "build", "--rollback")
    assert rollback.returncode == 1
    assert "another `nself build` is writing this project" in rollback.stderr
    assert (project / "docker-compose.yml").exists()  # the rollback did nothing


def test_a_plugin_change_while_another_runs_is_refused(project: Path, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundles", "alpha")
    with exclusive(project / ".nself" / "plugins.lck", "held", "by the test"):
        refused = cli(project, "plugin", "install", str(bundle), "--yes")
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.splitlines() == [
        "error: another `nself plugin` command is changing this project's plugins",
        "hint: wait for it to finish, then run the command again",
    ]
    assert not (project / "plugins" / "alpha").exists()
    assert not (project / "plugins.lock").exists()
    installed = cli(project, "plugin", "install", str(bundle), "--yes")
    assert installed.returncode == 0, installed.stderr
    assert (project / "plugins" / "alpha" / "plugin.toml").is_file()


def test_the_lock_goes_with_a_process_killed_holding_it(project: Path) -> None:
    lock = project / ".nself" / "build.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pathlib import Path\nfrom nself_sdk.locks import exclusive\n"
         "with exclusive(Path(sys.argv[1]), 'held', ''):\n"
         "    print('held', flush=True)\n    time.sleep(600)\n",
         str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert cli(project, "build").returncode == 1
    finally:
        holder.kill()
        holder.wait()
    assert lock.exists()  # the file stays; its lock does not
    assert cli(project, "build").returncode == 0
