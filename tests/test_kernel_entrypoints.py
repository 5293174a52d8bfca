"""The kernel's own entry-point scan finds what ``importlib.metadata`` finds.

It exists for start-up speed (``importlib.metadata`` costs ~20 ms of every ``nself``
start); these tests keep the two in agreement on every layout pip leaves behind.
"""

from __future__ import annotations

import importlib.metadata
import zipfile
from pathlib import Path

import pytest

from nself import entrypoints

GROUPS = ("nself.plugins", "nself.essential")


def _normalized(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def ours() -> set[tuple[str, str, str, str]]:
    return {(e.group, e.name, e.value, _normalized(e.dist)) for e in entrypoints.scan(*GROUPS)}


def theirs() -> set[tuple[str, str, str, str]]:
    return {
        (e.group, e.name, e.value.split("[", 1)[0].strip(), _normalized(e.dist.name))
        for group in GROUPS
        for e in importlib.metadata.entry_points(group=group)
    }


def distribution(site: Path, name: str, text: str, kind: str = "dist-info") -> None:
    info = site / f"{name.replace('-', '_')}-1.0.{kind}"
    info.mkdir(parents=True)
    meta = "PKG-INFO" if kind == "egg-info" else "METADATA"
    (info / meta).write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(text)


def test_the_installed_distributions_agree() -> None:
    found = ours()
    assert ("nself.plugins", "project", "nself_builtins.project", "nself") in found
    assert ("nself.essential", "compose", "compose", "nself") in found
    assert found == theirs()


def test_every_layout_agrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    distribution(
        first,
        "acme-runtime",
        "# a comment\n[console_scripts]\nacme = acme:main\n\n"
        "[nself.plugins]\nacme = acme_plugin:plugin [extra]\n"
        "[nself.essential]\nacme = runtime\n",
    )
    distribution(first, "old-style", "[nself.plugins]\n  old = old_plugin  \n", "egg-info")
    # The same distribution further down sys.path is shadowed by the first one.
    distribution(second, "acme-runtime", "[nself.plugins]\nshadowed = nowhere\n")
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
        zipped.writestr("zipped-1.0.dist-info/entry_points.txt", "[nself.plugins]\nz = zmod\n")
    for folder in (str(archive), str(second), str(first)):
        monkeypatch.syspath_prepend(folder)
    found = ours()
    assert ("nself.plugins", "acme", "acme_plugin:plugin", "acme_runtime") in found
    assert ("nself.essential", "acme", "runtime", "acme_runtime") in found
    assert ("nself.plugins", "old", "old_plugin", "old_style") in found
    assert ("nself.plugins", "z", "zmod", "zipped") in found
    assert not any(name == "shadowed" for _g, name, _v, _d in found)
    assert found == theirs()
