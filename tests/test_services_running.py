"""The rendered templates really run: started natively with their own toolchain, their
/health answers over HTTP, their Dockerfile's HEALTHCHECK command passes, and /db and
/graphql reach a real PostgreSQL and a GraphQL endpoint with the env nself injects.

Base images cannot be pulled on this machine, so nothing is built with `docker build`:
Python and Node.js services run the Dockerfile's own CMD against dependencies installed
from their rendered manifests; Go, Rust and Java are compiled from the rendered sources.
Hasura itself cannot run here: a small stand-in answers GraphQL POSTs and checks the
admin secret, which is what the templates' code talks to.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from nself_builtins.services.catalog import catalog
from nself_builtins.services.scaffold import context, render
from pg_cluster import Cluster, free_port
from pg_cluster import pg as pg  # the session's PostgreSQL fixture

pytestmark = pytest.mark.slow
ADMIN_SECRET = "test-admin-secret-7c1e"
SERVICE = "my-svc"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nself-tests"
PYTHON_TEMPLATES = ("python", "fastapi", "flask")


class GraphQLStandIn(ThreadingHTTPServer):
    """Answers `{ __typename }` like Hasura does, if the admin secret is right."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _GraphQLHandler)
        self.seen: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/graphql"


class _GraphQLHandler(BaseHTTPRequestHandler):
    server: GraphQLStandIn

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append({"path": self.path, "body": body, "headers": headers})
        if self.headers.get("x-hasura-admin-secret") != ADMIN_SECRET:
            answer = {"errors": [{"message": "invalid x-hasura-admin-secret/x-hasura-access-key"}]}
        else:
            answer = {"data": {"__typename": "query_root"}}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def graphql() -> Iterator[GraphQLStandIn]:
    server = GraphQLStandIn()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def rendered(name: str, target: Path, port: int) -> Path:
    render(catalog()[name], target, context(SERVICE, port, SERVICE, "demo", "example.com", 1))
    return target


def dockerfile(path: Path) -> dict[str, list[str]]:
    parser = DockerfileParser(fileobj=io.BytesIO())
    parser.content = (path / "Dockerfile").read_text()
    final: dict[str, list[str]] = {}
    for item in parser.structure:
        if item["instruction"] == "FROM":
            final = {}
        final.setdefault(item["instruction"], []).append(item["value"])
    return final


def exec_form(value: str) -> list[str]:
    """A CMD/ENTRYPOINT/HEALTHCHECK CMD value as argv (JSON exec form or shell form)."""
    value = value.strip()
    if value.startswith("["):
        parsed: list[str] = json.loads(value)
        return parsed
    return ["sh", "-c", value]


def healthcheck_argv(path: Path) -> list[str]:
    value = dockerfile(path)["HEALTHCHECK"][0]
    words = shlex.split(value, posix=False)
    at = next(i for i, w in enumerate(words) if w == "CMD")
    return exec_form(value.split("CMD", 1)[1] if not words[at + 1].startswith("[") else
                     value[value.index("[", value.index("CMD")):])  # fmt: skip


def python_env(tmp: Path) -> Path:
    """One virtualenv with every Python template's rendered requirements, cached by hash."""
    manifests = [
        (rendered(n, tmp / f"req-{n}", 8000) / "requirements.txt").read_text()
        for n in PYTHON_TEMPLATES
    ]
    key = hashlib.sha256("\n".join(manifests).encode()).hexdigest()[:16]
    venv = CACHE / f"py{sys.version_info.major}{sys.version_info.minor}-{key}"
    if not (venv / ".complete").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        args = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        for n in PYTHON_TEMPLATES:
            args += ["-r", str(tmp / f"req-{n}" / "requirements.txt")]
        subprocess.run(args, check=True)
        (venv / ".complete").touch()
    return venv


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int
    folder: Path
    env: dict[str, str]
    log: Path
    checks: list[str] = field(default_factory=list)

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def wait_healthy(self, seconds: float = 90) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the service exited ({self.process.returncode}):\n{self.output()}")
            try:
                status, body = self.get("/health")
                if status == 200:
                    return body
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        pytest.fail(f"/health never answered:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def start(tmp_path: Path, pg: Cluster, graphql: GraphQLStandIn) -> Iterator[Any]:
    started: list[Running] = []

    def run(folder: Path, argv: list[str], port: int, path_prefix: str = "") -> Running:
        database = "svc_" + folder.name.replace("-", "_")
        pg.sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        pg.sql(f'CREATE DATABASE "{database}"')
        env = {
            **os.environ,
            "PORT": str(port),
            "DATABASE_URL": pg.url(database),
            "HASURA_GRAPHQL_URL": graphql.url,
            "HASURA_GRAPHQL_ADMIN_SECRET": ADMIN_SECRET,
            "JWT_SECRET": '{"type":"HS256","key":"' + "k" * 40 + '"}',
            "NODE_ENV": "production",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if path_prefix:
            env["PATH"] = f"{path_prefix}:{env['PATH']}"
        log = folder / "service.log"
        process = subprocess.Popen(
            argv,
            cwd=folder,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        running = Running(process, port, folder, env, log)
        running.env["DATABASE"] = database
        started.append(running)
        return running

    yield run
    for running in started:
        if running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGTERM)
            try:
                running.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(running.process.pid, signal.SIGKILL)
                running.process.wait()
        pg.sql(f'DROP DATABASE IF EXISTS "{running.env["DATABASE"]}" WITH (FORCE)')


def check_service(running: Running, graphql: GraphQLStandIn, has_db: bool) -> None:
    body = running.wait_healthy()
    assert body["status"] == "ok" and body["service"] == SERVICE, body
    # The Dockerfile's own HEALTHCHECK command, run natively where its tool exists.
    argv = healthcheck_argv(running.folder)
    argv = [a.replace("/usr/local/bin/server", str(running.folder / "server")) for a in argv]
    tool = argv[2].split()[0] if argv[0] == "sh" else argv[0]
    if shutil.which(tool, path=running.env["PATH"]) or Path(tool).is_file():
        done = subprocess.run(argv, env=running.env, cwd=running.folder, capture_output=True)
        assert done.returncode == 0, f"HEALTHCHECK {argv} failed: {done.stderr!r}"
        running.checks.append("healthcheck")
    before = len(graphql.seen)
    status, answer = running.get("/graphql")
    assert status == 200 and answer == {"data": {"__typename": "query_root"}}, answer
    assert graphql.seen[before]["headers"].get("x-hasura-admin-secret") == ADMIN_SECRET
    if has_db:
        status, row = running.get("/db")
        assert status == 200, row
        assert row["database"] == running.env["DATABASE"] and row["now"], row


@pytest.mark.parametrize("name", PYTHON_TEMPLATES)
def test_python_templates_run(
    name: str, tmp_path: Path, start: Any, graphql: GraphQLStandIn
) -> None:
    venv = python_env(tmp_path)
    port = free_port()
    folder = rendered(name, tmp_path / name, port)
    argv = exec_form(dockerfile(folder)["CMD"][-1])
    running = start(folder, argv, port, path_prefix=str(venv / "bin"))
    check_service(running, graphql, has_db=True)
    assert "healthcheck" in running.checks


def node_modules(folder: Path) -> None:
    """`npm install` of the rendered package.json, cached by its hash and linked in."""
    manifest = (folder / "package.json").read_bytes()
    cached = CACHE / f"npm-{hashlib.sha256(manifest).hexdigest()[:16]}"
    if not (cached / ".complete").is_file():
        shutil.rmtree(cached, ignore_errors=True)
        cached.mkdir(parents=True)
        (cached / "package.json").write_bytes(manifest)
        npm = ["npm", "install", "--omit=dev", "--no-audit", "--no-fund", "--prefer-offline"]
        done = subprocess.run(npm, cwd=cached, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        (cached / ".complete").touch()
    (folder / "node_modules").symlink_to(cached / "node_modules", target_is_directory=True)


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs Node.js and npm")
@pytest.mark.parametrize("name", ["node", "express"])
def test_node_templates_run(name: str, tmp_path: Path, start: Any, graphql: GraphQLStandIn) -> None:
    port = free_port()
    folder = rendered(name, tmp_path / name, port)
    node_modules(folder)
    running = start(folder, exec_form(dockerfile(folder)["CMD"][-1]), port)
    check_service(running, graphql, has_db=True)


def test_go_template_builds_and_runs(tmp_path: Path, start: Any, graphql: GraphQLStandIn) -> None:
    if shutil.which("go") is None:
        pytest.fail("needs the Go toolchain (scripts/test installs Debian's golang-go)")
    port = free_port()
    folder = rendered("go", tmp_path / "go", port)
    env = {**os.environ, "CGO_ENABLED": "0", "GOPROXY": "off", "GOFLAGS": "-mod=mod"}
    env.setdefault("GOCACHE", str(CACHE / "go-build"))
    done = subprocess.run(
        ["go", "build", "-o", "server", "."], cwd=folder, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(["go", "vet", "."], cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    running = start(folder, [str(folder / "server")], port)
    check_service(running, graphql, has_db=False)


def test_rust_template_builds_and_runs(tmp_path: Path, start: Any, graphql: GraphQLStandIn) -> None:
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).is_file():
        pytest.skip("needs cargo")
    port = free_port()
    folder = rendered("rust", tmp_path / "rust", port)
    env = {**os.environ, "CARGO_TARGET_DIR": str(CACHE / "cargo-target")}
    done = subprocess.run(
        [cargo, "build", "--offline", "--quiet"], cwd=folder, env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shutil.copy(CACHE / "cargo-target" / "debug" / SERVICE, folder / "server")
    running = start(folder, [str(folder / "server")], port)
    check_service(running, graphql, has_db=False)
    assert "healthcheck" in running.checks  # `server healthcheck`, as the Dockerfile runs it
    os.killpg(running.process.pid, signal.SIGTERM)
    running.process.wait(10)
    unhealthy = subprocess.run([str(folder / "server"), "healthcheck"], env=running.env)
    assert unhealthy.returncode == 1


def test_java_template_builds_and_runs(tmp_path: Path, start: Any, graphql: GraphQLStandIn) -> None:
    if shutil.which("javac") is None:
        pytest.skip("needs a JDK")
    port = free_port()
    folder = rendered("java", tmp_path / "java", port)
    source = folder / "src" / "main" / "java" / "app" / "Main.java"
    done = subprocess.run(
        ["javac", "--release", "17", "-d", "out", str(source)], cwd=folder, capture_output=True,
        text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    running = start(folder, ["java", "-cp", "out", "app.Main"], port)
    check_service(running, graphql, has_db=False)


# -- every template whose packages come from npm or PyPI (opt-in: cold installs take minutes)
ALL = os.environ.get("NSELF_TEST_ALL_TEMPLATES") == "1"
NODE_EXTRA = ("fastify", "koa", "socketio", "websocket", "hasura-actions")
NODE_TS = ("nest", "hono", "trpc", "graphql-yoga")
PY_EXTRA = ("django", "cron", "aiohttp", "litestar")
WITH_DB = {"fastify", "koa", "nest", "hono", "django", "aiohttp", "litestar"}
WITH_GRAPHQL = {"fastify", "koa", "nest", "hono", "django", "aiohttp", "litestar"}


@pytest.mark.skipif(not ALL, reason="set NSELF_TEST_ALL_TEMPLATES=1 (installs from npm/PyPI)")
@pytest.mark.parametrize("name", NODE_EXTRA + NODE_TS + PY_EXTRA)
def test_more_templates_run(name: str, tmp_path: Path, start: Any, graphql: GraphQLStandIn) -> None:
    port = free_port()
    folder = rendered(name, tmp_path / name, port)
    prefix = ""
    if name in PY_EXTRA:
        venv = CACHE / f"py-extra-{name}"
        if not (venv / ".complete").is_file():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
            subprocess.run([*pip, "-r", str(folder / "requirements.txt")], check=True)
            (venv / ".complete").touch()
        prefix = str(venv / "bin")
    elif name in NODE_TS:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefer-offline"],
            cwd=folder, capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        done = subprocess.run(["npm", "run", "build"], cwd=folder, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    else:
        node_modules(folder)
    running = start(folder, exec_form(dockerfile(folder)["CMD"][-1]), port, path_prefix=prefix)
    body = running.wait_healthy()
    assert body["status"] == "ok" and body["service"] == SERVICE, body
    if name in WITH_GRAPHQL:
        status, answer = running.get("/graphql")
        assert status == 200 and answer == {"data": {"__typename": "query_root"}}, answer
    if name in WITH_DB:
        status, row = running.get("/db")
        assert status == 200 and row["database"] == running.env["DATABASE"], row
    if name == "graphql-yoga":  # a remote schema: its resolvers reach Postgres and Hasura
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql",
            data=json.dumps({"query": "{ serverTime hasuraTypename }"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            data = json.loads(response.read())["data"]
        assert data["hasuraTypename"] == "query_root" and data["serverTime"], data
