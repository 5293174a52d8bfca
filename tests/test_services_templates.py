"""Every service template renders, parses, builds into the stack and (where this machine
has the toolchain) really starts and answers /health.

No base image can be pulled here, so the started services run natively with their own
toolchain instead of through `docker build`; the Dockerfiles are checked with a real parser.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from docker_helpers import standin
from nself_builtins.services import envslots
from nself_builtins.services.catalog import KINDS, SUFFIX, TEMPLATES, Template, catalog
from nself_builtins.services.scaffold import context, render

NAMES = sorted(catalog())
PORT = 8123
# A dashed name exercises every identifier rule (package names, modules, binaries).
SERVICE = "my-svc"
REQUIRED = {
    "node", "express", "fastify", "nest", "hono", "bun", "deno", "socketio", "bullmq",
    "python", "fastapi", "flask", "django", "celery", "go", "gin", "echo", "fiber", "grpc",
    "rust", "axum", "actix-web", "spring-boot", "ktor", "aspnet", "rails", "sinatra",
    "laravel", "phoenix", "static", "cron", "websocket",
}  # fmt: skip
# Template names are stable identifiers users type and CS_N_TEMPLATE records: a name may be
# added, never renamed or removed.
STABLE = {
    "actix-web",
    "aiohttp",
    "aspnet",
    "axum",
    "bullmq",
    "bun",
    "celery",
    "chi",
    "cron",
    "deno",
    "django",
    "echo",
    "express",
    "fastapi",
    "fastify",
    "fiber",
    "flask",
    "gin",
    "go",
    "graphql-yoga",
    "grpc",
    "hasura-actions",
    "hono",
    "java",
    "koa",
    "ktor",
    "laravel",
    "litestar",
    "nest",
    "node",
    "phoenix",
    "python",
    "rails",
    "rust",
    "sinatra",
    "slim",
    "socketio",
    "spring-boot",
    "static",
    "trpc",
    "websocket",
}
PLACEHOLDER = re.compile(r"\{\{-?\s*[A-Za-z_][A-Za-z0-9_]*\s*(\|[^}]*)?-?\}\}|\{%|%\}|\{#")


def rendered(name: str, target: Path) -> Path:
    values = context(SERVICE, PORT, SERVICE, "demo", "example.com", 7)
    render(catalog()[name], target, values)
    return target


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rendered")
    return {name: rendered(name, root / name) for name in NAMES}


def test_catalog_covers_the_issue_and_matches_the_folders() -> None:
    assert len(NAMES) >= 40
    assert set(NAMES) >= REQUIRED, sorted(REQUIRED - set(NAMES))
    assert set(NAMES) >= STABLE, f"renamed or removed: {sorted(STABLE - set(NAMES))}"
    folders = {p.name for p in TEMPLATES.iterdir() if p.is_dir()}
    assert folders == set(NAMES)
    for tpl in catalog().values():
        assert re.fullmatch(r"[a-z][a-z0-9-]*", tpl.name)
        assert tpl.kind in KINDS and tpl.description and tpl.language
        assert all(f.endswith(SUFFIX) for f in tpl.files()), tpl.name


@pytest.mark.parametrize("name", NAMES)
def test_template_renders_completely(name: str, renders: dict[str, Path]) -> None:
    tpl = catalog()[name]
    out = renders[name]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == tpl.outputs("my_svc")
    for must in ("Dockerfile", ".dockerignore", tpl.manifest, tpl.entry_path("my_svc")):
        assert must and (out / must).is_file(), f"{name}: missing {must!r}"
    everything = ""
    for rel in files:
        text = (out / rel).read_text()
        left = PLACEHOLDER.search(text)
        assert left is None, f"{name}/{rel}: placeholder left: {left.group(0) if left else ''}"
        everything += text
    assert SERVICE in everything and "demo" in everything
    entry = (out / tpl.entry_path("my_svc")).read_text()
    assert "/health" in entry or "health" in entry, f"{name}: the entry point has no /health"
    if tpl.kind != "static":
        for var in ("DATABASE_URL", "HASURA_GRAPHQL_URL", "HASURA_GRAPHQL_ADMIN_SECRET"):
            assert var in everything, f"{name}: never shows how to use {var}"


def stages(parser: DockerfileParser) -> list[list[dict[str, Any]]]:
    found: list[list[dict[str, Any]]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            found.append([])
        if found:
            found[-1].append(item)
    return found


@pytest.mark.parametrize("name", NAMES)
def test_dockerfile_is_safe_and_healthchecked(name: str, renders: dict[str, Path]) -> None:
    tpl = catalog()[name]
    parser = DockerfileParser(fileobj=io.BytesIO())
    parser.content = (renders[name] / "Dockerfile").read_text()
    steps = stages(parser)
    assert steps, f"{name}: no FROM"
    if tpl.compiled:
        assert len(steps) >= 2, f"{name}: compiled templates use a multi-stage build"
    final = {}
    for item in steps[-1]:
        final.setdefault(item["instruction"], []).append(item["value"])
    users = final.get("USER", [])
    assert users, f"{name}: the final stage must switch to a non-root USER"
    assert users[-1].split(":")[0] not in ("root", "0"), f"{name}: runs as root"
    checks = final.get("HEALTHCHECK", [])
    assert len(checks) == 1 and "health" in checks[0], f"{name}: needs a HEALTHCHECK"
    assert "CMD" in checks[0]
    exposed = " ".join(final.get("EXPOSE", []))
    assert str(PORT) in exposed.split(), f"{name}: EXPOSE {PORT} missing"
    assert final.get("CMD") or final.get("ENTRYPOINT"), f"{name}: nothing to run"
    for image in (s[0]["value"].split()[0] for s in steps):
        assert ":" in image or image.startswith("$"), f"{name}: pin a tag for {image}"


@pytest.mark.parametrize("name", NAMES)
def test_manifest_parses(name: str, renders: dict[str, Path]) -> None:
    tpl = catalog()[name]
    path = renders[name] / tpl.manifest
    text = path.read_text()
    if path.name.endswith(".json"):
        data = json.loads(text)
        assert data.get("name") or data.get("imports") or data.get("require"), name
    elif path.suffix == ".toml":
        tomllib.loads(text)
    elif path.suffix in (".xml", ".csproj"):
        ET.fromstring(text)
    elif path.name == "requirements.txt":
        from packaging.requirements import Requirement

        reqs = [Requirement(line) for line in text.splitlines() if line and line[0] != "#"]
        assert reqs, name
    elif path.name == "go.mod":
        assert re.search(r"^module \S+$", text, re.M) and re.search(r"^go 1\.\d+", text, re.M)
    else:
        assert text.strip(), name


def syntax_checkers() -> dict[str, list[str]]:
    checkers = {}
    if shutil.which("node"):
        checkers[".js"] = ["node", "--check"]
        checkers[".mjs"] = ["node", "--check"]
    if shutil.which("gofmt"):
        checkers[".go"] = ["gofmt", "-e", "-l"]
    return checkers


@pytest.mark.parametrize("name", NAMES)
def test_sources_are_valid_syntax(name: str, renders: dict[str, Path]) -> None:
    """Python is compiled; JavaScript and Go go through `node --check` and `gofmt -e`."""
    checkers = syntax_checkers()
    out = renders[name]
    for path in sorted(out.rglob("*")):
        if path.suffix == ".py":
            compile(path.read_text(), str(path), "exec")
        elif path.suffix in checkers:
            done = subprocess.run(
                [*checkers[path.suffix], str(path)], capture_output=True, text=True
            )
            assert done.returncode == 0, f"{name}/{path.name}: {done.stderr}"
        elif path.suffix == ".json":
            json.loads(path.read_text())


@pytest.mark.docker
def test_every_template_becomes_a_compose_service_and_an_nginx_route(
    project: Path, nself: Any, docker_engine: None
) -> None:
    """All templates in one project, through the real CLI, Compose and nginx -t."""
    for name in NAMES:
        result = nself("service", "add", name, "--template", name, "--subdomain", name, cwd=project)
        assert result.code == 0, result.output
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    done = subprocess.run(
        ["docker", "compose", "--env-file", ".env.computed", "config", "--format", "json"],
        cwd=project, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    slots = {s.name: s.values for s in envslots.read(project).values()}
    for name in NAMES:
        service = services[name]
        port = slots[name]["PORT"]
        assert Path(service["build"]["context"]) == project / "services" / name
        assert (project / "services" / name / "Dockerfile").is_file()
        env = service["environment"]
        assert env["PORT"] == port and env["DATABASE_URL"].startswith("postgres://")
        assert env["HASURA_GRAPHQL_URL"] == "http://hasura:8080/v1/graphql"
        assert env["HASURA_GRAPHQL_ADMIN_SECRET"] and env["JWT_SECRET"].startswith("{")
        assert "ports" not in service, f"{name} must not be published on the host"
        assert "healthcheck" not in service  # the image's HEALTHCHECK applies
        assert service["cap_drop"] == ["ALL"]
        site = (project / "nginx" / "sites" / f"{name}.conf").read_text()
        assert f"server_name {name}.local.nself.org;" in site
        assert f"http://{name}:{port};" in site
        if catalog()[name].websocket:
            assert "Upgrade" in site
    checked = subprocess.run(
        ["docker", "run", "--rm", "--network", "none",
         "-v", f"{project / 'nginx'}:/etc/nginx/nself:ro",
         standin("nginx"), "nginx", "-t", "-c", "/etc/nginx/nself/nginx.conf"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_installed_wheel_ships_every_template(tmp_path: Path) -> None:
    """Build the real wheel (hatchling), unpack it and render every template from it."""
    root = Path(__file__).parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=root, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("nself-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    prefix = "nself_builtins/services/templates/"
    assert prefix + "catalog.toml" in names
    for tpl in catalog().values():
        for rel in tpl.files():
            assert f"{prefix}{tpl.name}/{rel}" in names, f"wheel misses {tpl.name}/{rel}"
    script = (
        "import sys, pathlib, nself_builtins.services.scaffold as s\n"
        "from nself_builtins.services.catalog import catalog\n"
        "assert s.__file__.startswith(sys.argv[1]), s.__file__\n"
        "for t in catalog().values():\n"
        "    s.render(t, pathlib.Path(sys.argv[2]) / t.name,"
        " s.context('w', 8001, 'w', 'p', 'example.com', 1))\n"
        "print(len(catalog()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    ran = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "site"), str(tmp_path / "out")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert int(ran.stdout) == len(NAMES)
    assert (tmp_path / "out" / "phoenix" / "lib" / "w_web" / "router.ex").is_file()


def test_every_template_is_documented() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "services-custom.md").read_text()
    for tpl in catalog().values():
        assert f"| `{tpl.name}` |" in doc, f"docs/services-custom.md misses {tpl.name}"


def test_template_objects_are_typed() -> None:
    assert all(isinstance(t, Template) for t in catalog().values())
