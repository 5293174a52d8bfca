"""Every generated service held against its image's contract (issue #11, the lasting fix).

Each plugin that pins an image writes down that image's contract next to the service
(``nself_sdk.ImageContract``: the uid it runs as, what its entrypoint needs, the tools its
health check may use, the env it reads and needs, its ports and platforms, each with the
upstream file it comes from). Here the services of every kind of stack (core, optional,
monitoring, catalogue bundles; dev, staging, prod) are held against those contracts: the
health check runs a program the image ships, required env is set, exactly the
capabilities the entrypoint needs are granted, volumes are writable and bind-mounted files
readable by the image's user, on disk too after a build under umask 077. The unit tests
at the end break a contract on purpose and show each check failing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import nself_sdk
from docker_helpers import needs_docker, standin
from nself.cli import main
from nself_builtins.plugins.store import install_folder
from nself_sdk import HealthCheck, ImageContract, Mount, Service
from nself_sdk.contract import REQUIRED_PLATFORMS, health_tools, mount_problems, problems
from nself_sdk.testing import Result, set_env
from nself_sdk.writer import Plan

CATALOGUE = Path(__file__).resolve().parents[1] / "plugin_registry" / "catalogue"
FLAGS = ("ADMIN", "STORAGE", "REDIS", "FUNCTIONS", "MAIL", "SEARCH", "MONITORING")
# What a contract may leave unconfirmed, and why (said in the contract's notes too).
UNCONFIRMED = {
    "nself/nself-admin:0.9.0": {"env"},  # its Dockerfile lists none of the env it reads
    "binwiederhier/ntfy:v2.11.0": {"ports"},  # it listens where NTFY_LISTEN_HTTP says
    "postgrest/postgrest:v12.2.3": {"ports"},  # where PGRST_SERVER_PORT says
    "edoburu/pgbouncer:v1.23.1-p3": {"ports"},  # where LISTEN_PORT / the ini says
}
# Known defects, each fixed by the images work of issue #11: the contracts already say
# what the image needs, so these entries must go as each fix lands (the test fails on a
# fixed defect still listed here as much as on a new one).
KNOWN: dict[str, set[str]] = {}


def _init(folder: Path) -> None:
    try:
        main(["init", str(folder), "--name", "contracts"])
    except SystemExit as exc:
        assert not exc.code, f"nself init failed: {exc.code}"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with strong secrets for every target and the free catalogue installed."""
    import secrets

    folder = tmp_path_factory.mktemp("contracts") / "base"
    _init(folder)
    names = [
        line.split("=", 1)[0]
        for line in (folder / ".env.dev").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    ]
    values = {
        n: secrets.token_urlsafe(32) for n in names if n not in ("PROJECT_NAME", "BASE_DOMAIN")
    }
    values["HASURA_GRAPHQL_JWT_SECRET"] = '{"type":"HS256","key":"${HASURA_JWT_KEY}"}'
    values["MAIL_SMTP_PASSWORD"] = secrets.token_urlsafe(32)
    for name in (".env.secrets", ".env.secrets.staging", ".env.secrets.prod"):
        set_env(folder, name, **values)
    for env in ("staging", "prod"):
        # Outside dev Auth needs a mail server, whether the mail plugin is on or not.
        set_env(folder, f".env.{env}", MAIL_PROVIDER="sendgrid", AUTH_SMTP_HOST="smtp.example.com")
        set_env(folder, f".env.{env}", AUTH_SMTP_USER="apikey")  # Auth logs in on every mail
    for name in ("ntfy", "pgbouncer", "audit"):
        install_folder(folder, CATALOGUE / name, source="catalogue")
    return folder


def _stacks(base: Path, root: Path) -> Iterator[tuple[str, Plan]]:
    """Every kind of stack: each target with every flag on, and the core alone."""
    for env in ("dev", "staging", "prod"):
        for label, on in (("all", FLAGS), ("core", ())):
            folder = root / f"{env}-{label}"
            shutil.copytree(base, folder)
            layer = ".env.local" if env == "dev" else f".env.{env}"
            flags = {
                f"{f}_ENABLED": str(f in on and (f != "ADMIN" or env == "dev")).lower()
                for f in FLAGS
            }
            if on:  # scheduled backups (db-backup), a read replica and Hasura on it
                flags["BACKUP_SCHEDULE"] = "0 3 * * *"
                flags["POSTGRES_REPLICAS"] = "r1"
                flags["HASURA_REPLICA_ENABLED"] = "true"
            set_env(folder, layer, **flags)
            yield f"{env}-{label}", nself_sdk.plan(folder, env)


@pytest.fixture(scope="module")
def plans(base: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Plan]]:
    return list(_stacks(base, tmp_path_factory.mktemp("stacks")))


def test_the_stacks_cover_every_pinned_image(plans: list[tuple[str, Plan]]) -> None:
    services = {s.name for _label, plan in plans for s in plan.stack.services}
    assert {
        "postgres",
        "hasura",
        "auth",
        "nginx",
        "admin",
        "minio",
        "redis",
        "functions",
    } <= services
    assert {
        "mail",
        "meilisearch",
        "prometheus",
        "grafana",
        "redis-exporter",
        "cadvisor",
    } <= services
    assert {"ntfy", "pgbouncer", "audit", "db-backup", "postgres-r1", "hasura-replica"} <= services


def test_every_service_keeps_its_images_contract(plans: list[tuple[str, Plan]]) -> None:
    found: dict[str, set[str]] = {}
    for label, plan in plans:
        for service in plan.stack.services:
            if service.role == "custom":
                continue  # a project's own image: its contract is the project's business
            for problem in problems(service, plan.config, plan.files, plan.stack.routes):
                found.setdefault(service.name, set()).add(problem)
                assert problem in KNOWN.get(service.name, set()), f"{label}: {problem}"
    # A defect that is fixed must leave the list of known ones.
    assert found == {name: known for name, known in KNOWN.items() if name in found}
    assert set(found) == set(KNOWN), f"fixed, remove from KNOWN: {set(KNOWN) - set(found)}"


def test_every_contract_is_sourced_and_serves_amd64_and_arm64(
    plans: list[tuple[str, Plan]],
) -> None:
    contracts = {
        s.contract.image: s.contract
        for _label, plan in plans
        for s in plan.stack.services
        if isinstance(s.contract, ImageContract)
    }
    assert len(contracts) >= 23
    for image, contract in contracts.items():
        assert contract.source and all(src.startswith("https://") for src in contract.source), image
        assert set(REQUIRED_PLATFORMS) <= set(contract.platforms or ()), image
        assert set(contract.unconfirmed) <= UNCONFIRMED.get(image, set()), (
            image,
            contract.unconfirmed,
        )


def test_every_pinned_image_runs_the_reference_its_contract_describes(
    plans: list[tuple[str, Plan]],
) -> None:
    for _label, plan in plans:
        for service in plan.stack.services:
            contract = service.contract
            if isinstance(contract, ImageContract) and not service.build:
                assert service.image == contract.image, service.name


def test_bind_mounted_files_are_readable_after_a_build_under_umask_077(
    base: Path, tmp_path: Path, nself: Callable[..., Result]
) -> None:
    folder = tmp_path / "hardened"
    shutil.copytree(base, folder)
    set_env(folder, ".env.local", **{f"{f}_ENABLED": "true" for f in FLAGS})
    old = os.umask(0o077)
    try:
        result = nself("build", cwd=folder)
    finally:
        os.umask(old)
    assert result.code == 0, result.output
    plan = nself_sdk.plan(folder, "dev")
    written = [item.path for item in plan.files]
    found = {
        problem
        for service in plan.stack.services
        for problem in mount_problems(service, folder, written)
        if service.name != "admin"  # defect 10, listed in KNOWN
    }
    assert not found, "\n".join(sorted(found))


# -- the checks fail when a contract is broken ---------------------------------------------

WEB = ImageContract(
    image="example/web:1.0",
    source=("https://example.org/web/Dockerfile",),
    user=1000,
    username="web",
    starts_as=0,
    capabilities=("CHOWN", "SETGID", "SETUID"),
    writable=("/data",),
    writes=("/data",),
    tools=("web", "wget"),
    env=("WEB_*",),
    required=("WEB_SECRET",),
    ports=(8080,),
    platforms=REQUIRED_PLATFORMS,
)


def _web(**changes: object) -> Service:
    from dataclasses import replace

    service = Service(
        "web",
        WEB.image,
        port=8080,
        environment={"WEB_SECRET": "${WEB_SECRET}"},
        healthcheck=HealthCheck(("CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/")),
        mounts=(Mount("web_data", "/data"), Mount("./web", "/etc/web", read_only=True)),
        cap_add=("CHOWN", "SETGID", "SETUID"),
        contract=WEB,
    )
    return replace(service, **changes)  # type: ignore[arg-type]


def test_a_service_that_keeps_its_contract_has_no_problem() -> None:
    assert problems(_web()) == []


def test_a_health_check_with_a_tool_the_image_lacks_is_found() -> None:
    check = HealthCheck(("CMD", "curl", "-fsS", "http://127.0.0.1:8080/"))
    assert problems(_web(healthcheck=check)) == [
        "web: the health check runs curl, which example/web:1.0 does not ship"
    ]
    shell = HealthCheck(("CMD-SHELL", "wget -qO- http://127.0.0.1:8080/ | grep -q ok"))
    assert "web: the health check runs sh, which example/web:1.0 does not ship" in problems(
        _web(healthcheck=shell)
    )
    assert health_tools(("CMD", "bash", "-c", "exec 3<>/dev/tcp/x/1 && head -n 1 <&3")) == [
        "bash",
        "head",
    ]


def test_a_missing_required_env_name_and_a_typo_are_found() -> None:
    assert problems(_web(environment={})) == [
        "web: example/web:1.0 needs WEB_SECRET, which the service does not set"
    ]
    typo = {"WEB_SECRET": "x", "WBE_MODE": "fast"}
    assert problems(_web(environment=typo)) == [
        "web: sets WBE_MODE, which example/web:1.0 does not read"
    ]


def test_capabilities_must_be_exactly_what_the_entrypoint_needs() -> None:
    assert problems(_web(cap_add=("CHOWN", "SETUID"))) == [
        "web: example/web:1.0 needs capability SETGID, which is not granted"
    ]
    assert problems(_web(cap_add=("CHOWN", "SETGID", "SETUID", "NET_ADMIN"))) == [
        "web: grants capability NET_ADMIN, which example/web:1.0 does not need"
    ]
    # Started as its own user, the entrypoint has no root steps: nothing is needed.
    assert problems(_web(user="web", cap_add=())) == []
    assert problems(_web(drop_all_caps=False)) == [
        "web: keeps the engine's default capabilities; the image needs only CHOWN, SETGID, SETUID"
    ]


def test_volumes_must_be_writable_and_written_paths_not_read_only() -> None:
    assert problems(_web(mounts=(Mount("web_data", "/var/lib/web"),))) == [
        "web: volume web_data at /var/lib/web may not be writable by uid 1000: "
        "example/web:1.0 can write only /data"
    ]
    assert problems(_web(mounts=(Mount("./data", "/data", read_only=True),))) == [
        "web: example/web:1.0 writes to /data, but ./data is mounted read-only"
    ]
    assert problems(_web(mounts=(Mount("web_data", "/data"), Mount("./web", "/etc/web")))) == [
        "web: ./web is mounted writable at /etc/web, but uid 1000 cannot write a folder of "
        "the host's user"
    ]


def test_a_private_file_mounted_for_a_non_root_user_is_found(tmp_path: Path) -> None:
    from nself_sdk import GeneratedFile

    files = [GeneratedFile("web/web.conf", "x", mode=0o600), GeneratedFile("other", "y", 0o600)]
    assert problems(_web(), files=files) == [
        "web: web/web.conf (mode 0600) is bind-mounted but uid 1000 cannot read it"
    ]
    # On disk: a folder made 0700 by a host umask of 077 hides even a 0644 file.
    (tmp_path / "web").mkdir(mode=0o700)
    (tmp_path / "web").chmod(0o700)
    (tmp_path / "web" / "web.conf").write_text("x")
    (tmp_path / "web" / "web.conf").chmod(0o644)
    assert mount_problems(_web(), tmp_path, ["web/web.conf"]) == [
        "web: the folder web (mode 0700) is bind-mounted but uid 1000 cannot read it"
    ]
    (tmp_path / "web").chmod(0o755)
    assert mount_problems(_web(), tmp_path, ["web/web.conf"]) == []
    # Root with DAC_OVERRIDE reads anything: nothing to find.
    root = _web(user="0", cap_add=("CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"))
    (tmp_path / "web").chmod(0o700)
    assert mount_problems(root, tmp_path, ["web/web.conf"]) == []


def test_a_port_the_image_does_not_listen_on_is_found() -> None:
    assert problems(_web(port=9000)) == [
        "web: uses port 9000, which example/web:1.0 does not listen on"
    ]


def test_a_service_without_a_contract_is_found() -> None:
    assert problems(_web(contract=None)) == ["web: no image contract"]


# -- a bundle declares its image's contract in plugin.toml ---------------------------------

BUNDLE = """\
[plugin]
name = "whoami"
version = "1.0.0"
description = "An echo server"
requires_nself = ">=0.1.0"

[service]
image = "traefik/whoami:v1.10.3"

[service.contract]
source = ["https://github.com/traefik/whoami/blob/v1.10.3/Dockerfile"]
user = 1000
capabilities = []
tools = ["whoami"]
ports = [80]
platforms = ["linux/amd64", "linux/arm64"]
"""


def test_a_bundle_contract_is_parsed_and_its_mistakes_named() -> None:
    from nself_builtins.shared.manifest import ManifestError, parse_manifest

    manifest = parse_manifest(BUNDLE)
    assert manifest.service is not None
    contract = manifest.service.contract
    assert isinstance(contract, ImageContract)
    assert (contract.image, contract.user, contract.ports) == (
        "traefik/whoami:v1.10.3",
        1000,
        (80,),
    )
    assert contract.unconfirmed == ["writable", "env"]
    bad = (
        BUNDLE.replace('source = ["https://', 'source = ["http://')
        .replace("user = 1000", 'user = "web"')
        .replace("capabilities = []", 'capabilities = ["SYS_ADMIN"]')
        .replace('"linux/arm64"]', '"arm64"]')
    )
    with pytest.raises(ManifestError) as raised:
        parse_manifest(bad)
    messages = "\n".join(p.message for p in raised.value.problems)
    assert "[service.contract] source: must list where the facts come from" in messages
    assert "[service.contract] user: 'web' is not a uid" in messages
    assert "[service.contract] capabilities: 'SYS_ADMIN' (SYS_ADMIN) is not allowed" in messages
    assert "[service.contract] platforms: 'arm64' is not an os/arch" in messages


# -- `nself doctor --check images` -----------------------------------------------------------


def _load_foreign_image(name: str, arch: str, folder: Path) -> None:
    """An empty image built for ``arch``, loaded as ``name`` (what `docker save` writes)."""
    import hashlib
    import io
    import json
    import subprocess
    import tarfile

    layer = io.BytesIO()
    tarfile.open(fileobj=layer, mode="w").close()
    diff = hashlib.sha256(layer.getvalue()).hexdigest()
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff}"]},
        }
    ).encode()
    digest = hashlib.sha256(config).hexdigest()
    manifest = json.dumps(
        [{"Config": f"{digest}.json", "RepoTags": [name], "Layers": ["layer.tar"]}]
    ).encode()
    archive = folder / "image.tar"
    with tarfile.open(archive, "w") as tar:
        for member, data in (
            ("layer.tar", layer.getvalue()),
            (f"{digest}.json", config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    subprocess.run(["docker", "load", "-i", str(archive)], check=True, capture_output=True)


@needs_docker
@pytest.mark.docker
def test_doctor_reports_each_image_its_presence_platform_and_contract(
    project: Path, nself: Callable[..., Result], tmp_path: Path, docker_engine: None
) -> None:
    import json
    import secrets
    import subprocess

    machine = subprocess.run(
        ["docker", "info", "--format", "{{.Architecture}}"], capture_output=True, text=True
    ).stdout.strip()
    host = "arm64" if machine == "aarch64" else "amd64"
    foreign = "amd64" if host == "arm64" else "arm64"
    name = f"nself-test/foreign-{secrets.token_hex(4)}:1"
    _load_foreign_image(name, foreign, tmp_path)
    try:
        set_env(project, NGINX_IMAGE=name, POSTGRES_IMAGE=standin("postgres"))
        assert nself("build", cwd=project).code == 0
        result = nself("doctor", "--check", "images", "--json", cwd=project)
        findings = {f["message"].split(":", 1)[0]: f for f in json.loads(result.out)}
    finally:
        subprocess.run(["docker", "image", "rm", "-f", name], capture_output=True)
    assert result.code == 1  # the foreign image is an error
    assert set(findings) == {"postgres", "hasura", "auth", "nginx"}
    nginx = findings["nginx"]
    assert nginx["level"] == "error"
    assert (
        f"present (linux/{foreign}); built for linux/{foreign}, this host is linux/{host}"
        in (nginx["message"])
    )
    assert "overridden: the contract describes nginx:1.25-alpine" in nginx["message"]
    postgres = findings["postgres"]
    assert postgres["level"] == "warning"  # a stand-in: present, but not the pinned image
    assert f"present (linux/{host})" in postgres["message"]
    hasura = findings["hasura"]
    assert hasura["level"] == "ok"
    assert hasura["message"] == (
        "hasura: hasura/graphql-engine:v2.44.0, not present yet; hasura/graphql-engine:v2.44.0 "
        f"is published for linux/{host}"
    )


def test_every_service_runs_the_image_its_setting_names(
    base: Path, tmp_path: Path, plans: list[tuple[str, Plan]]
) -> None:
    """Air-gapped and mirror users set <NAME>_IMAGE (a bundle's <PREFIX>IMAGE, a slot's
    CS_N_IMAGE): every service of every kind of stack names that setting, it is declared,
    and setting it runs that image in the service's place, a bundle's too."""
    from nself_builtins.shared.images import image_setting

    for label, plan in plans:
        for service in plan.stack.services:
            setting = image_setting(service.name, service.labels, plan.config.declared)
            assert setting in plan.config.declared, (label, service.name, setting)
    folder = tmp_path / "mirrored"
    shutil.copytree(base, folder)
    flags = {f"{f}_ENABLED": "true" for f in FLAGS if f != "ADMIN"}
    set_env(folder, ".env.prod", BACKUP_SCHEDULE="0 3 * * *", CS_1_NAME="api",
            CS_1_IMAGE="example/api:1", CS_1_PORT="8001", **flags)  # fmt: skip
    first = nself_sdk.plan(folder, "prod")
    settings = {
        s.name: image_setting(s.name, s.labels, first.config.declared) for s in first.stack.services
    }
    assert {"acme", "api", "db-backup", "pgbouncer", "ntfy", "grafana"} <= set(settings)
    assert settings["pgbouncer"] == "PGBOUNCER_IMAGE" and settings["api"] == "CS_1_IMAGE"
    mirror = {s: f"mirror.example/{s.lower().replace('_', '-')}:1" for s in settings.values()}
    set_env(folder, ".env.prod", **{s: image for s, image in mirror.items() if s})
    for service in nself_sdk.plan(folder, "prod").stack.services:
        assert service.image == mirror[str(settings[service.name])], service.name
