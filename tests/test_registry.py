"""The signed registry: a real Starlette/uvicorn server on loopback, real HTTP via httpx.

Keys are throw-away pairs made here; nself trusts them through the documented test-only
override ``NSELF_TEST_TRUSTED_KEYS`` (the embedded production keys stay the default).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nself_registry import client, keys, publish
from nself_registry import index as idx
from nself_registry.server import Background, Settings, create_app
from nself_sdk import NselfError


def make_bundle(folder: Path, name: str, version: str, **manifest: str) -> Path:
    """A packed plugin with just a manifest and one migration."""
    manifest.setdefault("description", f"{name} for tests")
    lines = ["[plugin]", f'name = "{name}"', f'version = "{version}"']
    lines += [f'{k} = "{v}"' for k, v in manifest.items()]
    files = {
        "plugin.toml": "\n".join(lines) + "\n",
        "migrations/001_init.sql": f"create table {name.replace('-', '_')}_t (id int);\n",
    }
    path = folder / f"{name}-{version}.tar.gz"
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{member}")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return path


class Trust:
    """Throw-away keys, one per role, and the test-only trust file naming them."""

    def __init__(self, folder: Path) -> None:
        self.registry = keys.generate()
        self.publisher = keys.generate()
        self.license = keys.generate()
        self.ping = keys.generate()
        self.file = folder / "trusted.json"
        roles = {
            "registry": self.registry,
            "publisher": self.publisher,
            "license": self.license,
            "ping": self.ping,
        }
        self.file.write_text(json.dumps({role: self.pairs(key) for role, key in roles.items()}))

    @staticmethod
    def pairs(key: Any) -> dict[str, str]:
        raw = keys.raw_public(key.public_key())
        return {keys.key_id(raw): keys.b64(raw)}


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    return Trust(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def server(trust: Trust) -> Iterator[tuple[Background, Settings]]:
    settings = Settings(ping_key=trust.ping)
    with Background(create_app(settings)) as running:
        yield running, settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, trust: Trust, server: Any) -> Path:
    running, settings = server
    monkeypatch.setenv(keys.TEST_KEYS_VAR, str(trust.file))
    monkeypatch.setenv("NSELF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NSELF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(client.URL_VAR, running.url + "/")
    monkeypatch.setenv("NSELF_PING_API_URL", running.url)
    monkeypatch.setenv(client.TIMEOUT_VAR, "2")
    for var in (
        "NSELF_LICENSE_KEY",
        "NSELF_REGISTRY_TOKEN",
        "NSELF_REGISTRY_KEYS",
        "NSELF_PUBLISHER_KEYS",
    ):
        monkeypatch.delenv(var, raising=False)
    settings.root = tmp_path / "site"
    settings.revoked_file = tmp_path / "revoked.txt"
    settings.token = ""
    return tmp_path


def published(env: Path, trust: Trust, *bundles: tuple[str, str, dict[str, str]]) -> Path:
    folder = env / "bundles"
    for name, version, extra in bundles:
        make_bundle(folder, name, version, **extra)
    publish.publish(folder, env / "site", trust.registry)
    return env / "site"


def error_of(call: Any, *args: Any) -> str:
    with pytest.raises(NselfError) as caught:
        call(*args)
    return caught.value.message


def test_fetch_verifies_and_caches_an_artifact(env: Path, trust: Trust) -> None:
    site = published(env, trust, ("pgbouncer", "1.0.0", {}), ("pgbouncer", "1.1.0", {}))
    path = client.fetch(None, "pgbouncer")
    expected = (site / "artifacts" / "pgbouncer-1.1.0.tar.gz").read_bytes()
    assert path.read_bytes() == expected
    assert hashlib.sha256(path.read_bytes()).hexdigest() in str(path)
    older = client.fetch(None, "pgbouncer", "1.0.0")
    assert older.read_bytes() == (site / "artifacts" / "pgbouncer-1.0.0.tar.gz").read_bytes()
    assert [a.name for a in client.search(None, "pgb")] == ["pgbouncer"]


def test_tampered_artifact_is_refused_and_nothing_is_kept(env: Path, trust: Trust) -> None:
    site = published(env, trust, ("cache-kit", "1.0.0", {}))
    archive = site / "artifacts" / "cache-kit-1.0.0.tar.gz"
    data = bytearray(archive.read_bytes())
    data[-5] ^= 0xFF
    archive.write_bytes(bytes(data))
    message = error_of(client.fetch, None, "cache-kit", None)
    assert "does not match the signed index (sha256 mismatch)" in message
    leftovers = [p for p in (env / "cache" / "artifacts").rglob("*") if p.is_file()]
    assert leftovers == []


def test_larger_artifact_is_cut_off(env: Path, trust: Trust) -> None:
    site = published(env, trust, ("cache-kit", "1.0.0", {}))
    archive = site / "artifacts" / "cache-kit-1.0.0.tar.gz"
    archive.write_bytes(archive.read_bytes() + b"\0" * 200_000)
    assert "larger than" in error_of(client.fetch, None, "cache-kit", None)


def rewrite_index(site: Path, change: Any) -> None:
    path = site / "index.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_tampered_index_is_refused(env: Path, trust: Trust) -> None:
    site = published(env, trust, ("cache-kit", "1.0.0", {}))

    def grow(doc: dict[str, Any]) -> None:
        doc["signed"]["artifacts"][0]["size"] += 1

    rewrite_index(site, grow)
    assert "signature does not verify" in error_of(client.fetch, None, "cache-kit", None)


def test_unsigned_index_is_refused(env: Path, trust: Trust) -> None:
    site = published(env, trust, ("cache-kit", "1.0.0", {}))
    rewrite_index(site, lambda doc: doc.update(signatures=[]))
    assert error_of(client.fetch, None, "cache-kit", None) == "registry index is not signed"


def test_index_signed_by_an_unknown_key_is_refused(env: Path, trust: Trust) -> None:
    folder = env / "bundles"
    make_bundle(folder, "cache-kit", "1.0.0")
    publish.publish(folder, env / "site", keys.generate())
    assert "untrusted key" in error_of(client.fetch, None, "cache-kit", None)


def test_index_rollback_is_refused(env: Path, trust: Trust) -> None:
    site = published(env, trust, ("cache-kit", "1.0.0", {}))
    old = (site / "index.json").read_text()
    make_bundle(env / "bundles", "cache-kit", "1.1.0")
    publish.publish(env / "bundles", site, trust.registry)
    client.fetch(None, "cache-kit")
    (site / "index.json").write_text(old)
    message = error_of(client.fetch, None, "cache-kit", None)
    assert "index version 1 is older than version 2 already seen" in message


def test_expired_index_is_refused(env: Path, trust: Trust) -> None:
    bundle = publish.read_bundle(make_bundle(env / "bundles", "cache-kit", "1.0.0"))
    artifact = idx.sign_artifact(trust.registry, publish.artifact_for(bundle, "x.tar.gz"))
    issued = idx.now() - timedelta(days=40)
    doc = idx.sign_index(trust.registry, "t", 1, [artifact], timedelta(days=30), issued)
    (env / "site").mkdir()
    (env / "site" / "index.json").write_text(json.dumps(doc))
    message = error_of(client.fetch, None, "cache-kit", None)
    assert message.startswith("registry index (version 1) expired on")


def test_unknown_plugin_and_version(env: Path, trust: Trust) -> None:
    published(env, trust, ("cache-kit", "1.0.0", {}))
    assert "no plugin named 'nope'" in error_of(client.fetch, None, "nope", None)
    assert "has no version 9.9.9" in error_of(client.fetch, None, "cache-kit", "9.9.9")


def test_incompatible_nself_version(env: Path, trust: Trust) -> None:
    published(env, trust, ("future", "1.0.0", {"requires_nself": ">=99.0.0"}))
    assert "needs nself >= 99.0.0" in error_of(client.fetch, None, "future", None)


def test_offline_fallback_uses_the_cache_with_a_notice(
    env: Path, trust: Trust, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    published(env, trust, ("cache-kit", "1.0.0", {}))
    with Background(create_app(Settings(root=env / "site"))) as own:
        monkeypatch.setenv(client.URL_VAR, own.url + "/")
        first = client.fetch(None, "cache-kit")
    capsys.readouterr()
    again = client.fetch(None, "cache-kit")  # the server is gone now
    assert again == first
    err = capsys.readouterr().err
    assert "is unreachable (ConnectError); working offline from the cached index (version 1" in err
    client.clear_cache()
    message = error_of(client.fetch, None, "cache-kit", None)
    assert "is unreachable (ConnectError) and nothing is cached" in message


def test_private_registry_needs_its_token(
    env: Path, trust: Trust, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    published(env, trust, ("cache-kit", "1.0.0", {}))
    server[1].token = "s3cret-token-for-tests"
    assert "refused access (HTTP 401)" in error_of(client.fetch, None, "cache-kit", None)
    monkeypatch.setenv(client.TOKEN_VAR, "s3cret-token-for-tests")
    assert client.fetch(None, "cache-kit").is_file()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, proc: Any) -> Any:
    import httpx

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        try:
            return httpx.get(url, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


@contextlib.contextmanager
def entry_point_server(**settings: str) -> Iterator[str]:
    """`python -m nself_registry.server` on a free loopback port, configured only by env as
    in the CS_1 image; yields its URL once it answers."""
    import subprocess
    import sys

    port = free_port()
    environ = dict(os.environ, PORT=str(port), HOST="127.0.0.1", **settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nself_registry.server"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url + "/health", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_ping_api_container_entry_runs_from_env(env: Path, trust: Trust) -> None:
    """`python -m nself_registry.server`, configured only by env, as in the CS_1 image."""
    import base64

    import httpx

    from nself_registry import licensing

    with entry_point_server(
        PING_SIGNING_KEY=base64.b64encode(keys.private_pem(trust.ping)).decode(),
        PING_REVOKED="lic_gone",
        PING_TELEMETRY_FILE=str(env / "events.jsonl"),
        NSELF_REGISTRY_DIR=str(published(env, trust, ("notify", "1.0.0", {}))),
    ) as url:
        assert httpx.get(url + "/health").json()["ping_api"] is True
        now = int(time.time())
        for lid, status in (("lic_ok", "valid"), ("lic_gone", "revoked")):
            key = licensing.issue(
                trust.license, lid, plugins=("ai",), issued=now - 5, expires=now + 3600
            )
            lic = licensing.parse(key)
            doc = licensing.ask(url, lic)
            assert doc["signed"]["status"] == status
        telemetry = httpx.post(url + "/v1/telemetry", json={"event": "install", "secret": "x"})
        assert telemetry.status_code == 202
        assert json.loads((env / "events.jsonl").read_text())["event"] == "install"
        assert "secret" not in (env / "events.jsonl").read_text()
        nested = httpx.post(url + "/v1/license/check", content=b"[" * 10_000)
        assert nested.status_code == 400  # bad JSON, however deep: not a server error
        assert httpx.get(url + "/index.json").json()["signed"]["version"] == 1
        assert httpx.get(url + "/artifacts/..%2Findex.json").status_code == 404


def test_ping_api_cs1_lines_from_the_docs_build(project: Path, nself: Any) -> None:
    """The CS_1 block of docs/plugins/licences.md composes a ping-api service with a route."""
    import re

    import yaml

    doc = (Path(__file__).parent.parent / "docs" / "plugins" / "licences.md").read_text()
    block = re.search(r"<!-- cs1-begin -->\n```sh\n(.*?)```", doc, re.S)
    assert block is not None
    with (project / ".env.dev").open("a") as out:
        out.write(block.group(1))
    (project / ".env.local").open("a").write("PING_SIGNING_KEY=c2VjcmV0LXBlbQ==\n")
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    service = compose["services"]["ping-api"]
    assert service["image"] == "nself/ping-api:latest"
    assert "PING_SIGNING_KEY" in str(service["environment"])
    assert "ports" not in service
    nginx = "".join(p.read_text() for p in (project / "nginx").rglob("*.conf"))
    assert "ping.local.nself.org" in nginx


def test_publisher_cli_keygen_publish_and_licence_minting(
    env: Path, nself: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = env / "keys" / "registry.pem"
    made = nself("registry", "keygen", str(key))
    assert made.code == 0, made.output
    assert key.stat().st_mode & 0o777 == 0o600
    kid, _, pub = (env / "keys" / "registry.pem.pub").read_text().strip().partition(":")
    assert f"NSELF_REGISTRY_KEYS={kid}:{pub}" in made.out
    assert nself("registry", "keygen", str(key)).code == 2  # never overwrites silently
    make_bundle(env / "bundles", "notify", "1.0.0")
    site = env / "site"
    first = nself(
        "registry", "publish", str(env / "bundles"), "--out", str(site), "--key", str(key)
    )
    assert first.code == 0, first.output
    assert "published index version 1 with 1 artifacts" in first.out
    make_bundle(env / "bundles", "notify", "1.1.0", tier="pro")
    second = nself("registry", "publish", str(env / "bundles"), "-o", str(site), "-k", str(key))
    assert "published index version 2 with 2 artifacts" in second.out
    assert "notify 1.1.0 [pro]" in second.out
    back = nself(
        "registry",
        "publish",
        str(env / "bundles"),
        "-o",
        str(site),
        "-k",
        str(key),
        "--version",
        "2",
    )
    assert back.code == 2 and "only goes up" in back.err
    # a private key a client does not trust yet, then trusted through NSELF_REGISTRY_KEYS
    assert "untrusted key" in error_of(client.fetch, None, "notify", "1.0.0")
    monkeypatch.setenv("NSELF_REGISTRY_KEYS", f"{kid}:{pub}")
    assert client.fetch(None, "notify", "1.0.0").is_file()
    # changing a released version's bytes is refused
    archive = make_bundle(env / "bundles", "notify", "1.0.0", description="changed")
    assert archive.is_file()
    again = nself("registry", "publish", str(env / "bundles"), "-o", str(site), "-k", str(key))
    assert again.code == 2 and "already published with other content" in again.err
    lic_key = env / "keys" / "licence.pem"
    assert nself("registry", "keygen", str(lic_key)).code == 0
    minted = nself(
        "registry", "issue-license", "-k", str(lic_key), "--id", "lic_9", "--plugin", "ai"
    )
    assert minted.code == 0 and minted.out.startswith("nself_pro_")
    unlisted = nself("registry", "issue-license", "-k", str(lic_key), "--id", "lic_10")
    assert unlisted.code == 2 and "grants exactly what it lists" in unlisted.err


def test_serve_refuses_a_folder_without_an_index(env: Path, nself: Any) -> None:
    (env / "empty").mkdir()
    result = nself("registry", "serve", str(env / "empty"))
    assert result.code == 2 and "has no index.json" in result.err
    assert nself("registry", "serve").code == 2


def test_index_signed_during_a_key_rotation(env: Path, trust: Trust) -> None:
    """Old clients know only the old key, new ones the new: an index may carry both."""
    site = published(env, trust, ("notify", "1.0.0", {}))
    doc = json.loads((site / "index.json").read_text())
    newcomer = keys.generate()
    extra = {
        "keyid": keys.key_id(newcomer.public_key()),
        "sig": keys.sign(newcomer, keys.DOMAIN_INDEX, keys.canonical(doc["signed"])),
    }
    doc["signatures"].insert(0, extra)
    (site / "index.json").write_text(json.dumps(doc))
    assert client.fetch(None, "notify").is_file()
    # and a signature made for another purpose never counts
    doc["signatures"] = [
        {
            "keyid": keys.key_id(trust.registry.public_key()),
            "sig": keys.sign(trust.registry, keys.DOMAIN_ARTIFACT, keys.canonical(doc["signed"])),
        }
    ]
    (site / "index.json").write_text(json.dumps(doc))
    client.clear_cache()
    assert "signature does not verify" in error_of(client.fetch, None, "notify", None)


def test_artifact_publisher_signature_is_checked(env: Path, trust: Trust) -> None:
    """A validly signed index listing an artifact its publisher did not sign is refused."""
    stranger = keys.generate()
    archive = make_bundle(env / "bundles", "notify", "1.0.0")
    publish.sign_archive(archive, stranger)  # notify-1.0.0.tar.gz.sig by an unknown key
    site = published(env, trust)
    assert "published by an untrusted key" in error_of(client.fetch, None, "notify", None)
    doc = json.loads((site / "index.json").read_text())
    entry = doc["signed"]["artifacts"][0]
    entry["publisher"] = keys.key_id(trust.registry.public_key())  # a claim, not a proof
    doc["signed"]["version"] = 2
    doc["signatures"][0]["sig"] = keys.sign(
        trust.registry, keys.DOMAIN_INDEX, keys.canonical(doc["signed"])
    )
    (site / "index.json").write_text(json.dumps(doc))
    message = error_of(client.fetch, None, "notify", None)
    assert message == "the publisher signature of notify 1.0.0 does not verify"


def test_registry_url_from_the_project_settings(
    env: Path, trust: Trust, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published(env, trust, ("notify", "1.0.0", {}))
    url = os.environ[client.URL_VAR]
    monkeypatch.delenv(client.URL_VAR)
    assert client.source(project).url == client.DEFAULT_URL  # nothing set: the public one
    (project / ".env.local").open("a").write(f"NSELF_REGISTRY_URL={url.rstrip('/')}\n")
    assert client.source(project).url == url
    assert client.fetch(project, "notify").is_file()
    monkeypatch.setenv(client.URL_VAR, "ftp://example.invalid/")  # the environment wins
    with pytest.raises(NselfError, match="must start with https://"):
        client.source(project)


def test_nself_registry_serve_private(env: Path, trust: Trust) -> None:
    """`nself registry serve FOLDER --token-env VAR` as a real process."""
    import subprocess
    import sys

    import httpx

    site = published(env, trust, ("notify", "1.0.0", {}))
    ping_key = env / "ping.pem"
    ping_key.write_bytes(keys.private_pem(trust.ping))
    port = free_port()
    environ = dict(os.environ, REG_TOKEN="a-long-enough-private-token")
    nself_bin = Path(sys.executable).with_name("nself")
    proc = subprocess.Popen(
        [str(nself_bin), "registry", "serve", str(site), "--port", str(port),
         "--token-env", "REG_TOKEN", "--ping-key", str(ping_key)],
        env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        health = wait_for(url + "/health", proc).json()
        assert health == {"status": "ok", "registry": True, "ping_api": True}
        assert httpx.get(url + "/index.json").status_code == 401
        auth = {"Authorization": "Bearer a-long-enough-private-token"}
        assert httpx.get(url + "/index.json", headers=auth).json()["signed"]["version"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_separate_publisher_signs_with_nself_plugin_sign(
    env: Path, trust: Trust, nself: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher = env / "publisher.pem"
    made = nself("registry", "keygen", "--role", "publisher", str(publisher))
    assert made.code == 0 and "NSELF_PUBLISHER_KEYS=" in made.out, made.output
    archive = make_bundle(env / "bundles", "notify", "1.0.0")
    signed = nself("plugin", "sign", str(archive), "--key", str(publisher))
    assert signed.code == 0, signed.output
    assert (env / "bundles" / "notify-1.0.0.tar.gz.sig").is_file()
    # a signature for other bytes (the archive packed again since) is refused at publish
    signature = archive.with_name(archive.name + ".sig")
    kept = signature.read_bytes()
    signature.write_text(kept.decode().replace(publish.read_bundle(archive).sha256, "0" * 64))
    registry_key = env / "registry.pem"
    registry_key.write_bytes(keys.private_pem(trust.registry))
    stale = nself(
        "registry", "publish", str(env / "bundles"), "-o", str(env / "x"), "-k", str(registry_key)
    )
    assert stale.code == 1 and "signs other bytes than notify-1.0.0.tar.gz" in stale.err
    assert not (env / "x").exists()
    signature.write_bytes(kept)
    published(env, trust)
    assert "published by an untrusted key" in error_of(client.fetch, None, "notify", None)
    monkeypatch.setenv("NSELF_PUBLISHER_KEYS", (env / "publisher.pem.pub").read_text().strip())
    assert client.fetch(None, "notify").is_file()
