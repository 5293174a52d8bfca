"""docs/plugins/tutorial.md, executed: every command, file and output it shows.

Blocks the test understands (the info string after the language):
- ``console``: ``$ nself ...`` runs nself in-process, ``$ cd DIR`` changes folder,
  ``$ pytest ...`` runs pytest; the lines after a command must appear in its output, and a
  command whose shown output has ``error:`` must fail. ``console skip`` is not run.
- ``file=PATH``: write the block to PATH; ``append=PATH``: append it;
  ``replace=PATH``: ``old --- new`` replaced in PATH; ``compare=PATH``: PATH must hold it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from nself_sdk.testing import Result

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "plugins" / "tutorial.md"
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


def test_the_tutorial_works_as_written(tmp_path: Path, nself: Run) -> None:
    cwd = tmp_path
    ran = 0
    for lang, info, body in blocks(TUTORIAL.read_text()):
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
            argv = shlex.split(command)
            if argv[0] == "cd":
                cwd = (cwd / argv[1]).resolve()
                assert cwd.is_dir(), command
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
                raise AssertionError(f"the tutorial runs {argv[0]!r}, which this test cannot")
            ran += 1
            failing = any(line.startswith("error:") for line in expected)
            assert (code != 0) == failing, f"$ {command}\n{output}"
            for line in expected:
                assert line in output, f"$ {command}: {line!r} not in\n{output}"
    assert ran >= 14
