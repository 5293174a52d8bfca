"""`nself plugin install/update/remove` through the real registry client and server.

Bundles are packed with `nself plugin pack`'s code, published and signed with throw-away
keys (trusted through NSELF_TEST_TRUSTED_KEYS), served by uvicorn on loopback.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from nself_builtins.plugins.authoring import pack_bundle
from nself_builtins.plugins.store import LOCK_FILE, read_lock
from nself_registry import publish
from nself_sdk.testing import Result
from plugin_helpers import make_bundle
from test_license import age_answer, mint, silent  # noqa: F401
from test_registry import Trust, env, server, trust  # noqa: F401

Run = Callable[..., Result]
CATALOGUE = Path(__file__).resolve().parent.parent / "plugin_registry" / "catalogue"


def pack(env: Path, name: str, version: str = "1.0.0", extra: str = "") -> Path:  # noqa: F811
    folder = make_bundle(env / "src" / version, name, version, extra)
    archive, _digest = pack_bundle(folder, env / "bundles")
    return archive


def catalogue_bundles(env: Path) -> list[str]:  # noqa: F811
    """Pack every bundle of the shipped catalogue; returns their names."""
    names = []
    for folder in sorted(CATALOGUE.glob("*/plugin.toml")):
        pack_bundle(folder.parent, env / "bundles")
        names.append(folder.parent.name)
    return names


def installed(project: Path) -> dict[str, str]:
    return {name: e.version for name, e in read_lock(project).items()}


def one_error(result: Result, expected: str) -> None:
    assert result.code == 1, result.output
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.err
    assert "Traceback" not in result.output


def test_install_update_remove_through_the_registry(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
) -> None:
    shipped = catalogue_bundles(env)
    pack(env, "hello", "1.0.0")
    publish.publish(env / "bundles", env / "site", trust.registry)

    found = nself("plugin", "search", "--json", cwd=project)
    assert found.code == 0, found.output
    assert {p["name"] for p in json.loads(found.out)} == {"hello", *shipped}

    done = nself("plugin", "install", "--yes", "hello", cwd=project)
    assert done.code == 0, done.output
    assert installed(project) == {"hello": "1.0.0"}
    assert read_lock(project)["hello"].source == "registry"
    for name in shipped:
        assert nself("plugin", "install", "--yes", name, cwd=project).code == 0, name
    assert set(installed(project)) == {"hello", *shipped}

    pack(env, "hello", "1.1.0")
    publish.publish(env / "bundles", env / "site", trust.registry)
    check = nself("plugin", "update", "--check", cwd=project)
    assert "hello 1.0.0 -> 1.1.0 available" in check.out
    assert installed(project)["hello"] == "1.0.0"
    updated = nself("plugin", "update", "hello", cwd=project)
    assert updated.code == 0, updated.output
    assert "updated hello 1.0.0 -> 1.1.0" in updated.out
    assert installed(project)["hello"] == "1.1.0"
    assert "up to date" in nself("plugin", "update", "hello", cwd=project).out

    built = nself("build", cwd=project)
    assert built.code == 0, built.output
    services = yaml.safe_load((project / "docker-compose.yml").read_text())["services"]
    assert any("hello" in name for name in services)

    gone = nself("plugin", "remove", "hello", "--yes", cwd=project)
    assert gone.code == 0, gone.output
    assert "hello" not in installed(project)
    assert not (project / "plugins" / "hello").exists()


def test_pro_plugin_needs_a_licence_to_install(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
) -> None:
    pack(env, "ai", "1.0.0", extra='tier = "pro"\n')
    publish.publish(env / "bundles", env / "site", trust.registry)
    refused = nself("plugin", "install", "--yes", "ai", cwd=project)
    one_error(refused, "plugin ai needs a pro licence and none is set")
    assert installed(project) == {} and not (project / "plugins" / "ai").exists()

    assert nself("license", "set", mint(trust, plugins=("ai",)), cwd=project).code == 0
    done = nself("plugin", "install", "--yes", "ai", cwd=project)
    assert done.code == 0, done.output
    assert installed(project) == {"ai": "1.0.0"}
    built = nself("build", cwd=project)
    assert built.code == 0, built.output
    assert "warning" not in built.err


def test_lapsed_licence_never_stops_an_installed_pro_plugin(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
    monkeypatch: pytest.MonkeyPatch,
    silent: str,  # noqa: F811
) -> None:
    pack(env, "ai", "1.0.0", extra='tier = "pro"\n')
    publish.publish(env / "bundles", env / "site", trust.registry)
    assert nself("license", "set", mint(trust), cwd=project).code == 0
    assert nself("plugin", "install", "--yes", "ai", cwd=project).code == 0
    # the licence server has been unreachable for 8 days: past the 7-day grace window
    monkeypatch.setenv("NSELF_PING_API_URL", silent)
    monkeypatch.setenv("NSELF_HTTP_TIMEOUT", "0.5")
    age_answer(trust, 8)
    built = nself("build", cwd=project)
    assert built.code == 0, built.output
    assert "grace period is over" in built.err and "installed plugins keep working" in built.err
    again = nself("plugin", "install", "--yes", "ai", "--force", cwd=project)
    one_error(again, "the 7-day grace period is over")
    archive = env / "bundles" / "ai-1.0.0.tar.gz"
    local = nself("plugin", "install", "--yes", str(archive), "--force", cwd=project)
    one_error(local, "the 7-day grace period is over")  # local archives are installs too
    assert installed(project) == {"ai": "1.0.0"}
    # without any licence the build refuses the pro plugin (one clear error)
    assert nself("license", "clear", cwd=project).code == 0
    one_error(nself("build", cwd=project), "plugin ai needs a pro licence and none is set")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("tampered artifact", "does not match the signed index (sha256 mismatch)"),
        ("tampered index", "registry index signature does not verify"),
        ("unknown plugin", "no plugin named 'nope' in the registry"),
        ("unknown version", "plugin hello has no version 9.0.0"),
        ("incompatible", "hello 1.0.0 needs nself >= 99.0.0 (this is nself"),
        ("index nested too deep", "served an index that is not JSON"),
        ("index of 33 MiB", "index.json is larger than 32 MiB: refused"),
    ],
)
def test_bad_registry_installs_leave_nothing_behind(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
    case: str,
    expected: str,
) -> None:
    extra = 'requires_nself = ">=99.0.0"\n' if case == "incompatible" else ""
    archive = pack(env, "hello", "1.0.0", extra=extra)
    publish.publish(env / "bundles", env / "site", trust.registry)
    site = env / "site"
    if case == "tampered artifact":
        served = site / "artifacts" / archive.name
        data = bytearray(served.read_bytes())
        data[len(data) // 2] ^= 0x55
        served.write_bytes(bytes(data))
    if case == "tampered index":
        doc = json.loads((site / "index.json").read_text())
        doc["signed"]["artifacts"][0]["url"] = "https://elsewhere.invalid/hello.tar.gz"
        (site / "index.json").write_text(json.dumps(doc))
    if case == "index nested too deep":
        (site / "index.json").write_text("[" * 100_000)
    if case == "index of 33 MiB":  # a valid, signed index, padded: cut off while streaming
        with (site / "index.json").open("a") as out:
            out.write(" " * (33 << 20))
    spec = {"unknown plugin": "nope", "unknown version": "hello@9.0.0"}.get(case, "hello")
    one_error(nself("plugin", "install", "--yes", spec, cwd=project), expected)
    assert installed(project) == {}
    assert not (project / "plugins").exists() or not any((project / "plugins").iterdir())
    assert not (project / LOCK_FILE).exists() or not read_lock(project)
    shutil.rmtree(env / "cache", ignore_errors=True)
