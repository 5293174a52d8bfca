"""The plugin docs, executed: every command, file and output docs/plugins/tutorial.md and
the registry walk-through of docs/plugins/registry.md show.

Blocks the test understands (the info string after the language):
- ``console``: ``$ nself ...`` runs nself in-process, ``$ nself ... &`` runs it in the
  background until the test ends (a server: the port its ``--port`` names must answer
  first), ``$ cd DIR`` changes folder, ``$ export NAME=VALUE`` sets a variable for the
  commands after it (VALUE expanded by the shell, so ``$(cat FILE)`` works), ``$ pytest
  ...`` runs pytest; the lines after a command must appear in its output, and a command
  whose shown output has ``error:`` must fail. ``console skip`` is not run.
- ``file=PATH``: write the block to PATH; ``append=PATH``: append it;
  ``replace=PATH``: ``old --- new`` replaced in PATH; ``compare=PATH``: PATH must hold it.

The registry's port 8001 is replaced by a free port; nself's memory of registries
(``NSELF_HOME``) and its download cache live in the test's folder.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from docker_helpers import free_port
from nself_sdk.testing import Result

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
Run = Callable[..., Result]


def blocks(text: str) -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2).strip(), m.group(3)) for m in FENCE.finditer(text)]


def commands(body: str) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif line.strip() and found:
            found[-1][1].append(line.strip())
    return found


def wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "the background command exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing answered on port {port}")


def run_doc(text: str, cwd: Path, nself: Run, monkeypatch: pytest.MonkeyPatch) -> tuple[int, Path]:
    """Run every block of ``text`` from ``cwd``; the number of commands run, the last cwd."""
    ran = 0
    background: list[subprocess.Popen[bytes]] = []
    try:
        for lang, info, body in blocks(text):
            options = dict(part.split("=", 1) for part in info.split() if "=" in part)
            if "file" in options:
                target = cwd / options["file"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(body)
                continue
            if "append" in options:
                with (cwd / options["append"]).open("a") as handle:
                    handle.write(body)
                continue
            if "replace" in options:
                old, new = body.split("---\n")
                path = cwd / options["replace"]
                assert old in path.read_text(), f"{path} does not contain {old!r}"
                path.write_text(path.read_text().replace(old, new))
                continue
            if "compare" in options:
                assert (cwd / options["compare"]).read_text() == body, options["compare"]
                continue
            if lang != "console" or "skip" in info.split():
                continue
            for command, expected in commands(body):
                if command.startswith("export "):
                    name, _, value = command[len("export ") :].partition("=")
                    expanded = subprocess.run(
                        ["bash", "-c", f'printf %s "{value}"'],
                        cwd=cwd, capture_output=True, text=True, check=True,
                    ).stdout  # fmt: skip
                    assert expanded, command
                    monkeypatch.setenv(name, expanded)
                    continue
                argv = shlex.split(command)
                if argv[0] == "cd":
                    cwd = (cwd / argv[1]).resolve()
                    assert cwd.is_dir(), command
                    continue
                if argv[-1] == "&":
                    assert argv[0] == "nself" and "--port" in argv, command
                    server = subprocess.Popen(
                        [sys.executable, "-m", "nself", *argv[1:-1]],
                        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    background.append(server)
                    wait_for(int(argv[argv.index("--port") + 1]), server)
                    ran += 1
                    continue
                if argv[0] == "nself":
                    result = nself(*argv[1:], cwd=cwd)
                    output, code = result.output, result.code
                elif argv[0] == "pytest":
                    done = subprocess.run(
                        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *argv[1:]],
                        cwd=cwd, capture_output=True, text=True,
                    )  # fmt: skip
                    output, code = done.stdout + done.stderr, done.returncode
                else:
                    raise AssertionError(f"the docs run {argv[0]!r}, which this test cannot")
                ran += 1
                failing = any(line.startswith("error:") for line in expected)
                assert (code != 0) == failing, f"$ {command}\n{output}"
                for line in expected:
                    assert line in output, f"$ {command}: {line!r} not in\n{output}"
    finally:
        for server in background:
            server.terminate()
            server.wait(timeout=10)
    return ran, cwd


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No registry settings of this machine, and nself's memory in the test's folder."""
    for var in os.environ:
        if var.startswith(("NSELF_REGISTRY", "NSELF_PUBLISHER", "NSELF_TEST_TRUSTED")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("NSELF_HOME", str(tmp_path / ".nself-home"))
    monkeypatch.setenv("NSELF_CACHE_DIR", str(tmp_path / ".nself-cache"))
    return tmp_path


def test_the_tutorial_works_as_written(
    isolated: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran, _cwd = run_doc((DOCS / "tutorial.md").read_text(), isolated, nself, monkeypatch)
    assert ran >= 14


def test_the_registry_walk_through_works_as_written(
    isolated: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (DOCS / "registry.md").read_text()
    section = text[text.index("## Running a registry") : text.index("### Routes")]
    assert "8001" in section
    ran, cwd = run_doc(section.replace("8001", str(free_port())), isolated, nself, monkeypatch)
    assert ran >= 14
    lock = (cwd / "plugins.lock").read_text()
    assert "my-plugin" in lock and "0.2.0" in lock
