"""Attacks on the registry and on licences: one test per class, each against the real
registry server and ping_api (Starlette on uvicorn, over HTTP) and through the real CLI.

Each shows a clean refusal (one ``error:`` line, no traceback), nothing installed, and
nothing the attack wanted remembered: what this machine accepted from a registry (its
memory in ``$NSELF_HOME/registry``) is unchanged by a refused index. Keys are throw-away
pairs trusted through the test-only ``NSELF_TEST_TRUSTED_KEYS``, one per role.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from nself_registry import client, keys, licensing, publish
from nself_registry import index as idx
from nself_registry.server import Background, Settings, create_app, settings_from_env
from nself_sdk import NselfError
from nself_sdk.testing import Result
from test_license import DAY, age_answer, answering_500, mint, silent  # noqa: F401
from test_registry import Trust, entry_point_server, env, server, trust  # noqa: F401
from test_registry_install import installed, one_error, pack

Run = Callable[..., Result]


def refused(result: Result, expected: str, project: Path, before: dict[str, str]) -> None:
    """One clear error, and the project's plugins exactly as they were."""
    one_error(result, expected)
    assert installed(project) == before


def memory(env: Path) -> dict[str, bytes]:  # noqa: F811
    """What this machine remembers of registries (by key id), byte for byte."""
    folder = env / "home" / "registry"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, byte for byte."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def pair(key: Any) -> str:
    raw = keys.raw_public(key.public_key())
    return f"{keys.key_id(raw)}:{keys.b64(raw)}"


def write_index(site: Path, doc: dict[str, Any]) -> None:
    (site / "index.json").write_text(json.dumps(doc))


def resign(doc: dict[str, Any], key: Any) -> dict[str, Any]:
    payload = keys.canonical(doc["signed"])
    doc["signatures"] = [
        {"keyid": keys.key_id(key.public_key()), "sig": keys.sign(key, keys.DOMAIN_INDEX, payload)}
    ]
    return doc


# -- key roles ---------------------------------------------------------------------------------


def test_an_index_signed_by_a_publisher_key_is_refused(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    archive = pack(env, "hello")
    site = env / "site"
    publish.publish(env / "bundles", site, trust.publisher)  # the publisher signs an index
    assert json.loads((site / "index.json").read_text())["signed"]["role"] == "registry"
    before = memory(env)
    refused(
        nself("plugin", "install", "--yes", "hello", cwd=project),
        "which this nself trusts as a publisher key: only a registry key can sign an index",
        project,
        {},
    )
    assert memory(env) == before
    # a private publisher's key, trusted through NSELF_PUBLISHER_KEYS, no more than that
    private = keys.generate()
    monkeypatch.setenv("NSELF_PUBLISHER_KEYS", pair(private))
    pem = env / "publisher.pem"
    pem.write_bytes(keys.private_pem(private))
    index_before = (site / "index.json").read_bytes()
    cli = nself("registry", "publish", str(env / "bundles"), "-o", str(site), "-k", str(pem))
    assert cli.code == 2, cli.output
    assert "which this nself trusts as a publisher key: it cannot sign a registry index" in cli.err
    assert (site / "index.json").read_bytes() == index_before
    shutil.rmtree(site)
    publish.publish(env / "bundles", site, private)
    refused(
        nself("plugin", "install", "--yes", "hello", cwd=project),
        "only a registry key can sign an index",
        project,
        {},
    )
    assert nself("plugin", "search", cwd=project).code == 1
    assert memory(env) == before
    # the publisher's key does count where it belongs: on its artifact, in a registry index
    shutil.rmtree(site)
    publish.sign_archive(archive, private)
    publish.publish(env / "bundles", site, trust.registry)
    entry = json.loads((site / "index.json").read_text())["signed"]["artifacts"][0]
    assert entry["publisher"] == keys.key_id(private.public_key())
    done = nself("plugin", "install", "--yes", "hello", cwd=project)
    assert done.code == 0, done.output
    assert installed(project) == {"hello": "1.0.0"}


def test_licence_and_ping_keys_keep_to_their_roles(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ping_api never holds the key that mints licences, and a client never takes a
    licence key's signature for a server answer."""
    pem = base64.b64encode(keys.private_pem(trust.license)).decode()
    with pytest.raises(NselfError, match="is a licence key: a running server must never"):
        settings_from_env({"PING_SIGNING_KEY": pem})
    archive = pack(env, "ai", extra='tier = "pro"\n')
    # the signing commands refuse a key this nself trusts in another role, and write nothing
    for role in ("registry", "license", "ping"):
        (env / f"{role}.pem").write_bytes(keys.private_pem(getattr(trust, role)))
    sign_with_ping = nself("plugin", "sign", str(archive), "-k", str(env / "ping.pem"))
    assert sign_with_ping.code == 2, sign_with_ping.output
    assert "trusts as a ping key: it cannot sign an artifact" in sign_with_ping.err
    assert not archive.with_name(archive.name + ".sig").exists()
    assert nself("plugin", "sign", str(archive), "-k", str(env / "registry.pem")).code == 0
    mint_with_registry = nself(
        "registry", "issue-license", "-k", str(env / "registry.pem"), "--id", "x", "--tier-wide"
    )
    assert mint_with_registry.code == 2 and not mint_with_registry.out
    assert "trusts as a registry key: it cannot sign a licence key" in mint_with_registry.err
    publish_with_licence = nself(
        "registry", "publish", str(env / "bundles"), "-o", str(env / "x"),
        "-k", str(env / "license.pem"),
    )  # fmt: skip
    assert publish_with_licence.code == 2 and not (env / "x").exists()
    assert "trusts as a license key: it cannot sign a registry index" in publish_with_licence.err
    publish.publish(env / "bundles", env / "site", trust.registry)
    with Background(create_app(Settings(ping_key=trust.license))) as wrong:
        monkeypatch.setenv("NSELF_PING_API_URL", wrong.url)
        stored = nself("license", "set", mint(trust), cwd=project)
        assert stored.code == 0, stored.output
        assert "signed by a license key, not a ping key" in stored.err
        refused(
            nself("plugin", "install", "--yes", "ai", cwd=project),
            "has never been confirmed by the licence server",
            project,
            {},
        )


# -- released versions are immutable -----------------------------------------------------------


def test_publish_never_re_releases_a_version(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    nself: Run,
) -> None:
    key = env / "registry.pem"
    key.write_bytes(keys.private_pem(trust.registry))
    site = env / "site"

    def publish_cli() -> Result:
        return nself("registry", "publish", str(env / "bundles"), "-o", str(site), "-k", str(key))

    original = pack(env, "hello", "1.0.0").read_bytes()
    assert publish_cli().code == 0
    (site / "artifacts" / "hello-1.0.0.tar.gz").unlink()  # the operator lost the archive
    pack(env, "hello", "1.0.0", extra="# other bytes\n")
    index_before = (site / "index.json").read_bytes()
    again = publish_cli()
    assert again.code == 2 and "hello 1.0.0 was already published with other content" in again.err
    assert (site / "index.json").read_bytes() == index_before  # nothing changed
    assert not (site / "artifacts" / "hello-1.0.0.tar.gz").exists()
    # published without it, the version is withdrawn, and still remembered
    (env / "bundles" / "hello-1.0.0.tar.gz").unlink()
    pack(env, "other", "1.0.0")
    withdrawn = publish_cli()
    assert withdrawn.code == 0, withdrawn.output
    assert "hello 1.0.0 withdrawn: its archive is gone" in withdrawn.err
    signed = json.loads((site / "index.json").read_text())["signed"]
    assert [w["name"] for w in signed["withdrawn"]] == ["hello"]
    pack(env, "hello", "1.0.0", extra="# other bytes\n")
    later = publish_cli()
    assert later.code == 2 and "hello 1.0.0 was already published with other content" in later.err
    # build metadata does not make another version (SemVer: the same precedence)
    (env / "bundles" / "hello-1.0.0.tar.gz").unlink()
    pack(env, "hello", "1.0.0+rebuilt")
    spelled = publish_cli()
    assert spelled.code == 2, spelled.output
    assert "hello 1.0.0+rebuilt was already published with other content" in spelled.err
    (env / "bundles" / "hello-1.0.0+rebuilt.tar.gz").unlink()
    # the very same bytes may come back
    (env / "bundles" / "hello-1.0.0.tar.gz").write_bytes(original)
    restored = publish_cli()
    assert restored.code == 0, restored.output
    signed = json.loads((site / "index.json").read_text())["signed"]
    assert signed["withdrawn"] == [] and len(signed["artifacts"]) == 2


def test_a_known_version_with_other_bytes_is_refused_whatever_the_server_signs(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
) -> None:
    pack(env, "hello", "1.0.0")
    site = env / "site"
    publish.publish(env / "bundles", site, trust.registry)
    assert nself("plugin", "install", "--yes", "hello", cwd=project).code == 0
    lock_before = (project / "plugins.lock").read_bytes()
    # the registry's operator (or whoever holds its key) swaps hello 1.0.0 and signs a
    # correct, newer index for it: the server is consistent, only this machine remembers
    shutil.rmtree(env / "bundles")
    swapped = publish.read_bundle(pack(env, "hello", "1.0.0", extra="# swapped\n"))
    artifact = idx.sign_artifact(trust.registry, publish.artifact_for(swapped, "artifacts/h.tgz"))
    shutil.copyfile(swapped.path, site / "artifacts" / "h.tgz")
    doc = idx.sign_index(trust.registry, "nself", 7, [artifact], timedelta(days=30))
    write_index(site, doc)
    before = memory(env)
    expected = "offers hello 1.0.0 with other bytes (sha256"
    refused(
        nself("plugin", "install", "--yes", "hello@1.0.0", "--force", cwd=project),
        expected,
        project,
        {"hello": "1.0.0"},
    )
    one_error(nself("plugin", "update", "--check", cwd=project), expected)
    assert (project / "plugins.lock").read_bytes() == lock_before
    assert memory(env) == before  # still version 1 and the original sha256
    # the memory is what protects, and it survives clearing the download cache
    client.clear_cache()
    one_error(nself("plugin", "install", "--yes", "hello@1.0.0", "--force", cwd=project), expected)
    # another registry this machine trusts (its own key, its own URL) offering the same
    # name and version with other bytes: what was downloaded before stays the reference
    other_key = keys.generate()
    other_site = env / "other-site"
    (other_site / "artifacts").mkdir(parents=True)
    shutil.copyfile(swapped.path, other_site / "artifacts" / "h.tgz")
    write_index(other_site, idx.sign_index(other_key, "other", 1, [artifact], timedelta(days=3)))
    with Background(create_app(Settings(root=other_site))) as other:
        os.environ[client.URL_VAR] = other.url + "/"
        os.environ[keys.REGISTRY_KEYS_VAR] = pair(other_key)
        try:
            refused(
                nself("plugin", "install", "--yes", "hello@1.0.0", "--force", cwd=project),
                "than the ones this machine downloaded before",
                project,
                {"hello": "1.0.0"},
            )
        finally:
            del os.environ[keys.REGISTRY_KEYS_VAR]
    assert (project / "plugins.lock").read_bytes() == lock_before


def test_a_known_version_with_build_metadata_is_the_same_release(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
) -> None:
    """``1.0.0+rebuilt`` has the precedence of ``1.0.0``: offering it with other bytes is
    changing a released version, not releasing a new one."""
    pack(env, "hello", "1.0.0")
    site = env / "site"
    publish.publish(env / "bundles", site, trust.registry)
    assert nself("plugin", "install", "--yes", "hello", cwd=project).code == 0
    lock_before = (project / "plugins.lock").read_bytes()
    old = json.loads((site / "index.json").read_text())["signed"]["artifacts"]
    shutil.rmtree(env / "bundles")
    swapped = publish.read_bundle(pack(env, "hello", "1.0.0+rebuilt", extra="# swapped\n"))
    artifact = idx.sign_artifact(trust.registry, publish.artifact_for(swapped, "artifacts/h.tgz"))
    shutil.copyfile(swapped.path, site / "artifacts" / "h.tgz")
    kept = [idx.Artifact(**a) for a in old]
    for offered in ([*kept, artifact], [artifact]):  # beside the original, or instead of it
        write_index(site, idx.sign_index(trust.registry, "nself", 7, offered, timedelta(days=30)))
        before = memory(env)
        refused(
            nself("plugin", "install", "--yes", "hello", "--force", cwd=project),
            "hello 1.0.0" if len(offered) == 1 else "lists a plugin version twice",
            project,
            {"hello": "1.0.0"},
        )
        assert memory(env) == before
    assert (project / "plugins.lock").read_bytes() == lock_before


# -- index validity and the registry's identity ----------------------------------------------


@pytest.mark.parametrize("case", ["valid for a year", "issued in the future"])
def test_an_index_valid_too_far_ahead_is_refused(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
    case: str,
) -> None:
    pack(env, "hello")
    site = env / "site"
    publish.publish(env / "bundles", site, trust.registry)
    doc = json.loads((site / "index.json").read_text())
    doc["signed"]["version"] = 2
    if case == "valid for a year":  # sign_index refuses this, so it is made by hand
        doc["signed"]["expires"] = idx.stamp(idx.now() + timedelta(days=365))
        expected = "more than 90 days after it was issued"
    else:  # 30 days of validity, but starting in 80 days
        doc["signed"]["issued"] = idx.stamp(idx.now() + timedelta(days=80))
        doc["signed"]["expires"] = idx.stamp(idx.now() + timedelta(days=110))
        expected = "more than 90 days ahead"
    write_index(site, resign(doc, trust.registry))
    refused(nself("plugin", "install", "--yes", "hello", cwd=project), expected, project, {})
    assert memory(env) == {}
    key = env / "registry.pem"
    key.write_bytes(keys.private_pem(trust.registry))
    too_long = nself(
        "registry", "publish", str(env / "bundles"), "-o", str(site), "-k", str(key),
        "--days", "91",
    )  # fmt: skip
    assert too_long.code == 2 and "--days must be between 1 and 90" in too_long.err


def test_a_description_in_the_index_reaches_the_terminal_as_text(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
) -> None:
    """The index is signed, but its descriptions are the publishers' words: an escape
    sequence in one is shown as text by `nself plugin search`, and a tier that is not a
    word is refused."""
    pack(env, "hello")
    site = env / "site"
    publish.publish(env / "bundles", site, trust.registry)
    doc = json.loads((site / "index.json").read_text())
    doc["signed"]["version"] = 2
    doc["signed"]["artifacts"][0]["description"] = "hi\x1b[2K\x1b[1A\rall fine\x07"
    write_index(site, resign(doc, trust.registry))
    found = nself("plugin", "search", cwd=project)
    assert found.code == 0, found.output
    assert "\x1b" not in found.output and "\x07" not in found.output
    assert "hi [2K [1A all fine" in found.out
    doc["signed"]["version"] = 3
    doc["signed"]["artifacts"][0]["tier"] = "pro\x1b[8m"
    write_index(site, resign(doc, trust.registry))
    one_error(nself("plugin", "search", cwd=project), "tier 'pro\\x1b[8m' is not a tier")


def test_rollback_state_follows_the_registry_not_its_url(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    server: Any,  # noqa: F811
    project: Path,
    nself: Run,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = server[0].url.rsplit(":", 1)[1]
    site = env / "site"
    pack(env, "hello", "1.0.0")
    publish.publish(env / "bundles", site, trust.registry)
    old = (site / "index.json").read_bytes()
    pack(env, "hello", "1.1.0")
    publish.publish(env / "bundles", site, trust.registry)
    monkeypatch.setenv(client.URL_VAR, f"http://127.0.0.1:{port}/")
    assert nself("plugin", "install", "--yes", "hello", cwd=project).code == 0
    before = memory(env)
    (site / "index.json").write_bytes(old)  # the server goes back to version 1
    for spelling in (f"http://localhost:{port}", f"HTTP://127.0.0.1:{port}/"):
        monkeypatch.setenv(client.URL_VAR, spelling)
        refused(
            nself("plugin", "install", "--yes", "hello@1.0.0", "--force", cwd=project),
            "registry index version 1 is older than version 2 already seen",
            project,
            {"hello": "1.1.0"},
        )
    assert memory(env) == before
    # each spelling has its own download cache, none its own trust: one registry, one file
    kid = keys.key_id(trust.registry.public_key())
    assert set(before) == {"downloaded.json", f"{kid}.json"}


# -- licences ----------------------------------------------------------------------------------


def test_a_licence_key_is_never_sent_in_the_clear(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Plain http is for this machine only when a licence key would travel."""
    bundle = publish.read_bundle(pack(env, "ai", extra='tier = "pro"\n'))
    artifact = idx.sign_artifact(trust.registry, publish.artifact_for(bundle, "artifacts/ai.tgz"))
    monkeypatch.setenv(licensing.KEY_VAR, mint(trust))
    src = client.Source("http://registry.example/", "", "https://ping.example")
    with pytest.raises(NselfError, match="is plain http: nself does not send a licence key"):
        client.download(src, artifact)
    assert client._private_channel("https://registry.example/index.json")
    for local in ("http://127.0.0.1:8001/a", "http://localhost:1/", "http://[::1]:2/"):
        assert client._private_channel(local), local


def test_a_licence_for_one_plugin_does_not_open_another(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    server: Any,  # noqa: F811
    project: Path,
    nself: Run,
) -> None:
    for name in ("ai", "crm"):
        pack(env, name, extra='tier = "pro"\n')
    publish.publish(env / "bundles", env / "site", trust.registry)
    ai_only = mint(trust, plugins=("ai",))
    assert nself("license", "set", ai_only, cwd=project).code == 0
    expected = "licence lic_test (pro) does not include plugin crm (it covers ai)"
    refused(nself("plugin", "install", "--yes", "crm", cwd=project), expected, project, {})
    archive = env / "bundles" / "crm-1.0.0.tar.gz"
    refused(nself("plugin", "install", "--yes", str(archive), cwd=project), expected, project, {})
    # the registry server does not hand the archive to that licence either
    url = f"{server[0].url}/artifacts/crm-1.0.0.tar.gz"
    answer = httpx.get(url, headers={"X-Nself-License": ai_only})
    assert answer.status_code == 403
    assert "does not include plugin crm" in answer.json()["error"]
    assert nself("plugin", "install", "--yes", "ai", cwd=project).code == 0
    # a tier-wide licence says so: `issue-license --tier-wide`
    pem = env / "licence.pem"
    pem.write_bytes(keys.private_pem(trust.license))
    minted = nself("registry", "issue-license", "-k", str(pem), "--id", "lic_all", "--tier-wide")
    assert minted.code == 0, minted.output
    assert licensing.parse(minted.out.strip()).grants == "every pro plugin"
    assert nself("license", "set", minted.out.strip(), cwd=project).code == 0
    done = nself("plugin", "install", "--yes", "crm", cwd=project)
    assert done.code == 0, done.output
    assert installed(project) == {"ai": "1.0.0", "crm": "1.0.0"}
    # back to the licence for ai: the build refuses crm, however it got into plugins/
    assert nself("license", "set", ai_only, cwd=project).code == 0
    files_before = tree(project)
    one_error(nself("build", cwd=project), expected)
    assert tree(project) == files_before


def test_grace_survives_license_clear_and_set_with_the_server_down(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
    monkeypatch: pytest.MonkeyPatch,
    silent: str,  # noqa: F811
) -> None:
    pack(env, "ai", extra='tier = "pro"\n')
    publish.publish(env / "bundles", env / "site", trust.registry)
    key = mint(trust)
    assert nself("license", "set", key, cwd=project).code == 0  # the server answers: valid
    age_answer(trust, 8)  # ... eight days ago, and has been down since
    monkeypatch.setenv("NSELF_PING_API_URL", silent)
    monkeypatch.setenv(client.TIMEOUT_VAR, "0.5")
    assert nself("license", "clear", cwd=project).code == 0
    again = nself("license", "set", key, cwd=project)
    assert again.code == 0 and "its offline grace ended on" in again.err, again.output
    refused(
        nself("plugin", "install", "--yes", "ai", cwd=project),
        "the 7-day grace period is over",
        project,
        {},
    )
    # the grace end is the server's answer + 7 days, however often the key is set again
    status = json.loads(nself("license", "status", "--json", cwd=project).out)
    answer_time = licensing.last_answer(licensing.load_state(), "lic_test")
    assert answer_time is not None
    assert status["offline_grace_until"] == licensing.day(answer_time["time"] + 7 * DAY)
    # deleting the state as well leaves no signed answer at all: no grace whatsoever
    assert nself("license", "clear", cwd=project).code == 0
    licensing.state_path().unlink()
    assert nself("license", "set", key, cwd=project).code == 0
    refused(
        nself("plugin", "install", "--yes", "ai", cwd=project),
        "has never been confirmed by the licence server",
        project,
        {},
    )


def test_a_revocation_seen_once_survives_clear_and_set_with_the_server_down(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    server: Any,  # noqa: F811
    project: Path,
    nself: Run,
    monkeypatch: pytest.MonkeyPatch,
    silent: str,  # noqa: F811
) -> None:
    pack(env, "ai", extra='tier = "pro"\n')
    publish.publish(env / "bundles", env / "site", trust.registry)
    key = mint(trust)
    assert nself("license", "set", key, cwd=project).code == 0
    (env / "revoked.txt").write_text("lic_test\n")
    expected = "licence lic_test was revoked by the licence server"
    refused(nself("plugin", "install", "--yes", "ai", cwd=project), expected, project, {})
    monkeypatch.setenv("NSELF_PING_API_URL", silent)  # now the server goes quiet
    monkeypatch.setenv(client.TIMEOUT_VAR, "0.5")
    assert nself("license", "clear", cwd=project).code == 0
    again = nself("license", "set", key, cwd=project)
    one_error(again, "licence lic_test is revoked at the licence server (its answer of")
    assert not licensing.key_path().exists()
    monkeypatch.setenv(licensing.KEY_VAR, key)  # nor does the environment bypass it
    refused(nself("plugin", "install", "--yes", "ai", cwd=project), expected, project, {})
    status = json.loads(nself("license", "status", "--json", cwd=project).out)
    assert status["state"] == "degraded" and status["problems"][0].startswith(expected)
    # and the registry server refuses the archive to a revoked licence by itself
    answer = httpx.get(
        f"{server[0].url}/artifacts/ai-1.0.0.tar.gz", headers={"X-Nself-License": key}
    )
    assert answer.status_code == 403 and "licence lic_test is revoked" in answer.json()["error"]


def test_a_4xx_from_the_licence_server_is_a_refusal_not_an_outage(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Run,
    monkeypatch: pytest.MonkeyPatch,
    answering_500: str,  # noqa: F811
) -> None:
    """The real ping_api (its container entry point) that no longer accepts the key that
    signed this licence answers 422: installs are refused at once, with no grace."""
    pack(env, "ai", extra='tier = "pro"\n')
    publish.publish(env / "bundles", env / "site", trust.registry)
    key = mint(trust)
    assert nself("license", "set", key, cwd=project).code == 0  # a valid answer, just now
    server_keys = json.loads(trust.file.read_text())
    server_keys["license"] = Trust.pairs(keys.generate())  # the licence key, retired there
    (env / "server-keys.json").write_text(json.dumps(server_keys))
    with entry_point_server(
        PING_SIGNING_KEY=base64.b64encode(keys.private_pem(trust.ping)).decode(),
        NSELF_TEST_TRUSTED_KEYS=str(env / "server-keys.json"),
    ) as url:
        monkeypatch.setenv("NSELF_PING_API_URL", url)
        expected = "the licence server refused licence lic_test (" + url + " answered HTTP 422"
        refused(nself("plugin", "install", "--yes", "ai", cwd=project), expected, project, {})
        assert nself("license", "clear", cwd=project).code == 0
        again = nself("license", "set", key, cwd=project)
        one_error(again, expected)
        assert "not stored" in again.err and not licensing.key_path().exists()
    # whereas an outage (HTTP 500) within the grace window lets the install through
    monkeypatch.setenv("NSELF_PING_API_URL", answering_500)
    monkeypatch.setenv(licensing.KEY_VAR, key)
    done = nself("plugin", "install", "--yes", "ai", cwd=project)
    assert done.code == 0, done.output
    assert "licence server not reachable" in done.err and "answered HTTP 500" in done.err


def test_a_pro_archive_is_handed_out_only_for_a_covering_licence(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    server: Any,  # noqa: F811
) -> None:
    pack(env, "ai", extra='tier = "pro"\n')
    pack(env, "notify")
    site = env / "site"
    publish.publish(env / "bundles", site, trust.registry)
    base = f"{server[0].url}/artifacts/"
    plain = httpx.get(base + "ai-1.0.0.tar.gz")
    assert plain.status_code == 401 and "needs a pro licence" in plain.json()["error"]
    assert plain.headers["www-authenticate"].startswith("NselfLicense")
    assert httpx.get(base + "notify-1.0.0.tar.gz").status_code == 200  # free: no licence
    now = int(time.time())
    (env / "revoked.txt").write_text("lic_gone\n")
    refusals = {
        "another plugin's": (mint(trust, plugins=("crm",)), "does not include plugin ai"),
        "expired": (mint(trust, issued=now - 9 * DAY, expires=now - DAY), "is expired"),
        "revoked": (mint(trust, lid="lic_gone"), "licence lic_gone is revoked"),
        "forged": (mint(trust, keys.generate()), "signed by an unknown key"),
        "not a key": ("hello", "not an nself licence key"),
    }
    for case, (key, reason) in refusals.items():
        answer = httpx.get(base + "ai-1.0.0.tar.gz", headers={"X-Nself-License": key})
        assert answer.status_code == 403, case
        assert reason in answer.json()["error"], (case, answer.text)
    good = httpx.get(base + "ai-1.0.0.tar.gz", headers={"X-Nself-License": mint(trust)})
    assert good.status_code == 200
    assert good.content == (site / "artifacts" / "ai-1.0.0.tar.gz").read_bytes()
    assert good.headers["cache-control"] == "private, no-store"
    # only what the index offers is served: a file dropped beside the archives is not
    shutil.copyfile(site / "artifacts" / "ai-1.0.0.tar.gz", site / "artifacts" / "copy.tar.gz")
    assert httpx.get(base + "copy.tar.gz").status_code == 404
    # the client says what the server refused (here a registry that revoked a licence the
    # licence server still calls valid), and keeps nothing
    with Background(create_app(Settings(root=site, revoked_ids=frozenset({"lic_test"})))) as own:
        os.environ[client.URL_VAR] = own.url + "/"
        os.environ[licensing.KEY_VAR] = mint(trust)
        try:
            with pytest.raises(NselfError) as caught:
                client.fetch(None, "ai")
        finally:
            del os.environ[licensing.KEY_VAR]
    assert caught.value.message == (
        "the registry refused to hand out ai 1.0.0 (HTTP 403: ai 1.0.0: licence lic_test is "
        "revoked)"
    )
    assert not [p for p in (env / "cache" / "artifacts").rglob("*") if p.is_file()]
