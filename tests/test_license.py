"""Pro licences: offline verification, the ping_api on a real loopback server, grace window.

The licence signing key is a throw-away pair trusted through ``NSELF_TEST_TRUSTED_KEYS``.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nself_builtins.license import validate_license
from nself_registry import client, keys, licensing
from nself_registry.server import Background
from nself_sdk import Problem, load_config
from nself_sdk.testing import Result
from test_registry import Trust, env, error_of, published, server, trust  # noqa: F401

DAY = 86400


def mint(keyset: Trust, key: Any = None, **kw: Any) -> str:
    now = int(time.time())
    args: dict[str, Any] = {
        "issued": now - 60,
        "expires": now + 30 * DAY,
        "subject": "Tests",
        "plugins": ("ai",),
    }
    lid = kw.pop("lid", "lic_test")
    args.update(kw)
    return licensing.issue(key or keyset.license, lid, **args)


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def flip_payload(key: str) -> str:
    head, _, sig = key.rpartition(".")
    prefix, body = head[: len("nself_pro_")], head[len("nself_pro_") :]
    payload = unb64u(body).replace(b'"sub":"Tests"', b'"sub":"Tesus"')
    return f"{prefix}{b64u(payload)}.{sig}"


def flip_signature(key: str) -> str:
    head, _, sig = key.rpartition(".")
    raw = bytearray(unb64u(sig))
    raw[3] ^= 0x01
    return f"{head}.{b64u(bytes(raw))}"


@pytest.fixture
def pro_site(env: Path, trust: Trust) -> Path:  # noqa: F811
    return published(env, trust, ("ai", "1.0.0", {"tier": "pro"}), ("notify", "1.0.0", {}))


def test_licence_set_status_clear(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    nself: Callable[..., Result],
) -> None:
    key = mint(trust)
    result = nself("license", "set", key)
    assert result.code == 0, result.output
    assert key not in result.output and licensing.mask(key) in result.output
    stored = env / "home" / "license" / "key"
    assert stored.read_text().strip() == key
    assert stored.stat().st_mode & 0o777 == 0o600
    status = nself("license", "status", "--json")
    assert status.code == 0, status.output
    data = json.loads(status.out)
    assert (data["licence"], data["tier"], data["state"]) == ("lic_test", "pro", "valid")
    assert data["last_online_check"] != "never" and key not in status.output
    cleared = nself("license", "clear")
    assert cleared.code == 0 and not stored.exists()
    assert "no licence set" in nself("license", "status").out


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("flipped payload byte", "damaged or altered (its signature does not verify)"),
        ("flipped signature", "damaged or altered (its signature does not verify)"),
        ("unknown key id", "signed by an unknown key (key id"),
        ("expired", "licence lic_test expired on"),
        ("not yet valid", "licence lic_test is not valid until"),
        ("garbage", "this is not an nself licence key (expected nself_pro_…)"),
        ("garbage payload", "the licence key is damaged or altered"),
        ("payload nested too deep", "the licence key is damaged or altered"),
    ],
)
def test_bad_licence_keys_are_refused(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    nself: Callable[..., Result],
    case: str,
    expected: str,
) -> None:
    now = int(time.time())
    key = {
        "flipped payload byte": lambda: flip_payload(mint(trust)),
        "flipped signature": lambda: flip_signature(mint(trust)),
        "unknown key id": lambda: mint(trust, keys.generate()),
        "expired": lambda: mint(trust, issued=now - 40 * DAY, expires=now - DAY),
        "not yet valid": lambda: mint(trust, issued=now + 2 * DAY),
        "garbage": lambda: "hello-world",
        "garbage payload": lambda: "nself_pro_bm90IGpzb24.c2ln",
        "payload nested too deep": lambda: f"nself_pro_{b64u(b'[' * 100_000)}.c2ln",
    }[case]()
    result = nself("license", "set", key)
    assert result.code == 1, result.output
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.err
    assert "Traceback" not in result.output and key not in result.output
    assert not (env / "home" / "license" / "key").exists()


def test_pro_plugin_needs_a_licence(
    pro_site: Path,
    trust: Trust,  # noqa: F811
    nself: Callable[..., Result],
) -> None:
    assert client.fetch(None, "notify").is_file()  # free: no licence involved
    message = error_of(client.fetch, None, "ai", None)
    assert message == "plugin ai needs a pro licence and none is set"
    assert not list((pro_site.parent / "cache" / "artifacts").glob("*/ai-*"))
    assert nself("license", "set", mint(trust, plugins=("ai",), tiers=())).code == 0
    path = client.fetch(None, "ai")
    assert path.name == "ai-1.0.0.tar.gz"


def test_licence_must_cover_the_plugin(
    pro_site: Path,
    trust: Trust,  # noqa: F811
    nself: Callable[..., Result],
) -> None:
    assert nself("license", "set", mint(trust, plugins=("other",))).code == 0
    assert "does not include plugin ai" in error_of(client.fetch, None, "ai", None)


def test_revoked_by_the_server(
    pro_site: Path,
    trust: Trust,  # noqa: F811
    nself: Callable[..., Result],
) -> None:
    assert nself("license", "set", mint(trust)).code == 0
    (pro_site.parent / "revoked.txt").write_text("lic_test\n")
    assert error_of(client.fetch, None, "ai", None).startswith(
        "licence lic_test was revoked by the licence server ("
    )
    again = nself("license", "set", mint(trust))
    assert again.code == 1 and "is revoked at the licence server (its answer" in again.err
    assert "not stored" in again.err


@pytest.fixture
def answering_500() -> Iterator[str]:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def boom(request: Any) -> PlainTextResponse:
        return PlainTextResponse("internal error", status_code=500)

    app = Starlette(routes=[Route("/v1/license/check", boom, methods=["POST"])])
    with Background(app) as running:
        yield running.url


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def age_answer(keyset: Trust, days: float) -> None:
    """Pretend the last good server answer is ``days`` old (a real signed answer)."""
    state = licensing.load_state()
    [(lid, answer)] = state["answers"].items()
    signed = dict(answer["signed"])
    signed["time"] = int(time.time() - days * DAY)
    state["answers"][lid] = licensing.sign_answer(keyset.ping, signed)
    state["high_water"] = signed["time"]
    licensing.save_state(state)


@pytest.mark.parametrize("failure", ["answering_500", "silent"])
def test_grace_window_when_the_server_fails(
    pro_site: Path,
    trust: Trust,  # noqa: F811
    nself: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    failure: str,
) -> None:
    assert nself("license", "set", mint(trust)).code == 0
    monkeypatch.setenv("NSELF_PING_API_URL", request.getfixturevalue(failure))
    monkeypatch.setenv(client.TIMEOUT_VAR, "0.5")
    reason = "answered HTTP 500" if failure == "answering_500" else "did not answer within 0.5s"
    age_answer(trust, 2)
    assert client.fetch(None, "ai").is_file()  # inside the 7-day grace window
    err = capsys.readouterr().err
    assert "licence server not reachable" in err and reason in err
    age_answer(trust, 8)
    message = error_of(client.fetch, None, "ai", None)
    assert "the 7-day grace period is over" in message and reason in message


def test_build_keeps_installed_pro_plugins_working(
    pro_site: Path,
    trust: Trust,  # noqa: F811
    nself: Callable[..., Result],
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    silent: str,
) -> None:
    config = load_config(project)
    verdict = validate_license(config, "ai", "pro", "build")
    assert isinstance(verdict, Problem) and verdict.level == "error"
    assert "needs a pro licence" in verdict.message
    assert nself("license", "set", mint(trust)).code == 0
    assert validate_license(config, "ai", "pro", "build") is True
    # licence server gone for 8 days: installs refused, builds only warn
    monkeypatch.setenv("NSELF_PING_API_URL", silent)
    monkeypatch.setenv(client.TIMEOUT_VAR, "0.5")
    age_answer(trust, 8)
    assert "grace period is over" in error_of(client.fetch, None, "ai", None)
    verdict = validate_license(config, "ai", "pro", "build")
    assert isinstance(verdict, Problem) and verdict.level == "warning"
    assert "installed plugins keep working" in verdict.message


def test_expired_licence_warns_at_build_and_refuses_installs(
    pro_site: Path,
    trust: Trust,  # noqa: F811
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = int(time.time())
    monkeypatch.setenv("NSELF_LICENSE_KEY", mint(trust, issued=now - 40 * DAY, expires=now - 1))
    verdict = validate_license(load_config(project), "ai", "pro", "build")
    assert isinstance(verdict, Problem) and verdict.level == "warning"
    assert "expired" in verdict.message
    assert "expired on" in error_of(client.fetch, None, "ai", None)


def test_clock_rollback_is_detected(
    pro_site: Path,
    trust: Trust,  # noqa: F811
    nself: Callable[..., Result],
    project: Path,
) -> None:
    assert nself("license", "set", mint(trust)).code == 0
    state = licensing.load_state()
    state["high_water"] = int(time.time()) + DAY
    licensing.save_state(state)
    assert "clock rollback" in error_of(client.fetch, None, "ai", None)
    verdict = validate_license(load_config(project), "ai", "pro", "build")
    assert isinstance(verdict, Problem) and verdict.level == "warning"


def test_licence_key_rotation_and_retirement(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    nself: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new = keys.generate()
    both = json.loads(trust.file.read_text())
    both["license"].update(Trust.pairs(new))
    rotated = env / "rotated.json"
    rotated.write_text(json.dumps(both))
    monkeypatch.setenv(keys.TEST_KEYS_VAR, str(rotated))
    # keys signed by the old and by the new licence key are both accepted
    assert licensing.parse(mint(trust, new)).kid == keys.key_id(new.public_key())
    assert licensing.parse(mint(trust)).kid == keys.key_id(trust.license.public_key())
    old_kid = keys.key_id(trust.license.public_key())
    monkeypatch.setitem(keys.RETIRED, "license", {old_kid})
    result = nself("license", "set", mint(trust))
    assert result.code == 1 and f"key id {old_kid} has been retired" in result.err


def test_opt_in_telemetry_reaches_the_ping_api(
    pro_site: Path,
    server: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = pro_site.parent / "events.jsonl"
    server[1].telemetry_file = events
    try:
        client.fetch(None, "notify")
        assert not events.exists()  # nothing without consent
        monkeypatch.setenv("NSELF_TELEMETRY", "1")
        client.fetch(None, "notify")
        event = json.loads(events.read_text())
        assert (event["event"], event["plugin"], event["version"]) == ("install", "notify", "1.0.0")
    finally:
        server[1].telemetry_file = None


def test_status_reports_revocation_after_a_refresh(
    pro_site: Path,
    trust: Trust,  # noqa: F811
    nself: Callable[..., Result],
) -> None:
    assert nself("license", "set", mint(trust, plugins=("ai",), tiers=())).code == 0
    (pro_site.parent / "revoked.txt").write_text("lic_test\n")
    quiet = json.loads(nself("license", "status", "--json").out)
    assert quiet["state"] == "valid"  # not due for a refresh yet: no network
    data = json.loads(nself("license", "status", "--json", "--refresh").out)
    assert data["state"] == "degraded"
    [problem] = data["problems"]
    assert problem.startswith("licence lic_test was revoked by the licence server (")


@pytest.mark.parametrize(
    ("days", "level", "text"),
    [(100, "ok", "valid until"), (5, "warning", "days left"), (-2, "error", "expired on")],
)
def test_doctor_reports_the_licence(
    env: Path,  # noqa: F811
    trust: Trust,  # noqa: F811
    project: Path,
    nself: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    days: int,
    level: str,
    text: str,
) -> None:
    now = int(time.time())
    key = mint(trust, issued=now - 200 * DAY, expires=now + days * DAY)
    monkeypatch.setenv(licensing.KEY_VAR, key)
    result = nself("doctor", "--check", "licence", "--json", cwd=project)
    assert result.out.strip(), result.output
    [finding] = json.loads(result.out)
    assert finding["level"] == level and text in finding["message"]
    assert key not in result.output  # the key itself is never shown
    assert result.code == (1 if level == "error" else 0)


def test_the_licensor_commands_of_the_docs_run_as_written(
    tmp_path: Path, nself: Callable[..., Result]
) -> None:
    """docs/plugins/licences.md: a licence key, one licence for `ai`, one tier-wide."""
    import re
    import shlex

    doc = (Path(__file__).parent.parent / "docs" / "plugins" / "licences.md").read_text()
    block = re.search(r"Licensors mint keys with\n\n```sh\n(.*?)```", doc, re.S)
    assert block is not None
    minted = []
    for line in block.group(1).splitlines():
        argv = shlex.split(line)
        assert argv[0] == "nself"
        result = nself(*argv[1:], cwd=tmp_path)
        assert result.code == 0, result.output
        if argv[1:3] == ["registry", "issue-license"]:
            minted.append(result.out.strip())
    grants = []
    for key in minted:
        payload = json.loads(unb64u(key.removeprefix("nself_pro_").split(".")[0]))
        grants.append((payload["v"], payload["plugins"], payload["tiers"]))
    assert grants == [(2, ["ai"], []), (2, [], ["pro"])]
