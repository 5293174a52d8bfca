"""The stack on a real Docker engine: start, route, health, data, failures, teardown.

Runs against the real engine and Compose v2 with the local stand-in images (no registry is
reachable here). Hasura and Auth are disabled (HASURA_ENABLED=false, AUTH_ENABLED=false)
because their images (hasura/graphql-engine, nhost/hasura-auth) cannot be obtained on this
machine; their generated config stays covered by the build tests.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from docker_helpers import PROJECT_LABEL, docker, standin, standin_stack
from nself_sdk import load_config, runtime
from nself_sdk.testing import Result, set_env

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]

DOMAIN = "local.nself.org"
Run = Callable[..., Result]


def project_objects(name: str) -> dict[str, list[str]]:
    label = f"label={PROJECT_LABEL}={name}"
    return {
        "containers": docker("ps", "-aq", "--filter", label).stdout.split(),
        "networks": docker("network", "ls", "-q", "--filter", label).stdout.split(),
        "volumes": docker("volume", "ls", "-q", "--filter", label).stdout.split(),
    }


def container_of(project: str, service: str) -> dict[str, Any]:
    ids = docker(
        "ps",
        "-aq",
        "--filter",
        f"label={PROJECT_LABEL}={project}",
        "--filter",
        f"label=com.docker.compose.service={service}",
    ).stdout.split()
    assert len(ids) == 1, f"expected one {service} container, found {ids}"
    data: list[dict[str, Any]] = json.loads(docker("inspect", ids[0]).stdout)
    return data[0]


def https_get(port: int, host: str, path: str = "/") -> tuple[int, str]:
    """GET over TLS from nginx on 127.0.0.1:port, with SNI and Host set to ``host``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the dev certificate is self-signed
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
    return int(head.split()[1]), body


@pytest.fixture
def stack(tmp_path: Path, nself: Run) -> Iterator[tuple[Path, str, int]]:
    """A project with a unique name and free host ports, torn down even on failure."""
    echo = {"CS_1_NAME": "echo_api", "CS_1_IMAGE": standin("http"), "CS_1_PORT": "8001"}
    with standin_stack(nself, tmp_path, "nselfe2e", **echo, CS_1_SUBDOMAIN="echo") as made:
        yield made.folder, made.name, made.https


def psql(nself: Run, folder: Path, sql: str) -> Result:
    return nself(
        "exec", "postgres", "--", "psql", "-U", "postgres", "-d", "nself", "-Atc", sql, cwd=folder
    )


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def test_the_stack_runs_end_to_end(stack: tuple[Path, str, int], nself: Run) -> None:
    folder, name, https = stack

    # build, then start: every service becomes healthy.
    assert nself("build", cwd=folder).code == 0
    started = nself("start", "--timeout", "120", cwd=folder)
    assert started.code == 0, started.output
    assert "stack is up: 3 services healthy" in started.out
    assert "✓ PostgreSQL healthy" in started.out

    # nginx answers on HTTPS and routes by Host header to the custom service.
    code, body = https_get(https, f"echo.{DOMAIN}")
    assert (code, body.strip()) == (200, "nself stand-in upstream")
    code, body = https_get(https, f"nothing.{DOMAIN}")
    assert code == 404 and "no service at this address" in body

    # health: all green, one line each with latency, in the seed's style.
    health = nself("health", cwd=folder)
    assert health.code == 0, health.output
    lines = health.out.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith("✓ ") and line.endswith("ms)") for line in lines), lines
    assert any(line.startswith("✓ PostgreSQL healthy (") for line in lines)
    # --now runs every check again, concurrently, instead of reading the engine's probes.
    again = nself("health", "--now", "--json", cwd=folder)
    assert again.code == 0, again.output
    assert [r["status"] for r in json.loads(again.out)] == ["healthy"] * 3

    # status --json: the right services, running and healthy, with the custom service's URL.
    status = nself("status", "--json", cwd=folder)
    assert status.code == 0, status.output
    rows = {row["service"]: row for row in json.loads(status.out)}
    assert set(rows) == {"echo-api", "nginx", "postgres"}
    assert all(r["state"] == "running" and r["health"] == "healthy" for r in rows.values())
    assert rows["echo-api"]["url"] == f"https://echo.{DOMAIN}:{https}"
    assert rows["postgres"]["ports"] == []  # never published
    assert all(r["uptime_s"] >= 0 for r in rows.values())

    # a row written to Postgres through `nself exec`.
    wrote = psql(nself, folder, "CREATE TABLE notes(body text); INSERT INTO notes VALUES ('kept')")
    assert wrote.code == 0, wrote.output
    assert psql(nself, folder, "SELECT body FROM notes").out.strip() == "kept"
    failing = nself("exec", "postgres", "--", "sh", "-c", "exit 7", cwd=folder)
    assert failing.code == 7

    # The same through the SDK, as the database and secrets plugins use it: stdin in,
    # output captured, and a dump streamed out.
    rt = runtime(load_config(folder))
    fed = rt.exec("postgres", ["psql", "-U", "postgres", "-d", "nself", "-At"], input=b"SELECT 6*7")
    assert (fed.exit_code, fed.output.strip()) == (0, "42")
    dump = io.BytesIO()
    code = rt.exec_stream("postgres", ["pg_dump", "-U", "postgres", "nself"], stdout=dump)
    assert code == 0 and b"CREATE TABLE public.notes" in dump.getvalue()
    assert {s.name: s.health for s in rt.status()}["postgres"] == "healthy"

    # The table for people.
    table = nself("status", cwd=folder).out.splitlines()
    assert table[0].split() == ["SERVICE", "STATE", "HEALTH", "UPTIME", "URL"]
    assert any(line.split()[:3] == ["postgres", "running", "healthy"] for line in table[1:])
    # ... and the network by its real name (Compose scopes it to the project: the seed's
    # `docker network inspect nself` finds nothing), with the command that does work.
    network = f"{name}_nself"
    hint = f"network: {network}, project-scoped; inspect it with `docker network inspect {network}`"
    assert table[-1] == hint
    assert nself("urls", cwd=folder).out.splitlines()[-1] == hint
    inspected = json.loads(docker("network", "inspect", network).stdout)[0]
    members = {c["Name"] for c in inspected["Containers"].values()}
    assert f"{name}-postgres-1" in members and f"{name}-nginx-1" in members

    # logs of one service.
    logs = nself("logs", "postgres", "--tail", "50", cwd=folder)
    assert logs.code == 0 and "ready to accept connections" in logs.out

    # stop postgres: it is stopped on purpose, not unhealthy, but a core service is down:
    # health fails and names it, with the way out.
    assert nself("stop", "postgres", cwd=folder).code == 0
    health = nself("health", cwd=folder)
    assert health.code == 1
    assert "- PostgreSQL stopped  stopped on purpose" in health.out
    assert "nself start postgres" in health.out
    one = nself("health", "postgres", "--json", cwd=folder)
    assert one.code == 1 and json.loads(one.out)[0]["status"] == "stopped"
    assert nself("start", "postgres", "--timeout", "120", cwd=folder).code == 0

    # a killed container comes back by its restart policy (unless-stopped).
    before = container_of(name, "echo-api")
    os.kill(before["State"]["Pid"], signal.SIGKILL)
    wait_for(
        lambda: (
            container_of(name, "echo-api")["RestartCount"] > before["RestartCount"]
            and container_of(name, "echo-api")["State"]["Running"]
        ),
        60,
        "the killed container to be restarted",
    )

    # restart one service: it comes back healthy with a fresh uptime.
    restart = nself("restart", "postgres", "--timeout", "120", cwd=folder)
    assert restart.code == 0, restart.output
    rows = {r["service"]: r for r in json.loads(nself("status", "--json", cwd=folder).out)}
    assert rows["postgres"]["health"] == "healthy"
    assert rows["postgres"]["uptime_s"] < rows["nginx"]["uptime_s"]

    # stop everything, start again: the row is still there.
    assert nself("stop", cwd=folder).code == 0
    assert all(
        container_of(name, s)["State"]["Status"] == "exited"
        for s in ("echo-api", "nginx", "postgres")
    )
    restarted = nself("start", "--timeout", "120", cwd=folder)
    assert restarted.code == 0, restarted.output
    assert psql(nself, folder, "SELECT body FROM notes").out.strip() == "kept"

    # Custom services with a broken image are isolated; the core stays healthy.
    docker(
        "build",
        "-q",
        "-t",
        f"{name}-crash:1",
        "-",
        input=f'FROM {standin("http")}\nCMD ["sh", "-c", "exit 3"]\n',
    )
    try:
        set_env(
            folder,
            ".env.local",
            CS_2_NAME="ghost",
            CS_2_IMAGE=f"nself-standin/does-not-exist-{name}:1",
            CS_3_NAME="crasher",
            CS_3_IMAGE=f"{name}-crash:1",
            # Runs, but its health check never passes: --timeout gives up on it.
            CS_4_NAME="sleepy",
            CS_4_IMAGE=standin("http"),
            CS_4_PORT="8001",
            CS_4_HEALTH_PATH="/missing",
        )
        degraded = nself("start", "--timeout", "20", cwd=folder)
        assert degraded.code == 3, degraded.output  # EXIT_DEGRADED
        assert "rebuilt generated files" in degraded.out
        assert "ghost (ghost) isolated by the circuit breaker" in degraded.err
        assert "cannot be pulled" in degraded.err and "CS_2_IMAGE" in degraded.err
        assert "crasher (crasher) isolated by the circuit breaker" in degraded.err
        assert "stack is degraded" in degraded.out
        assert "sleepy (sleepy) isolated by the circuit breaker: not healthy after 20s" in (
            degraded.err
        )
        for isolated in ("crasher", "sleepy"):  # stopped, not left crashing or half-up
            assert container_of(name, isolated)["State"]["Status"] == "exited"
        core = nself("health", "postgres", "nginx", "echo_api", cwd=folder)
        assert core.code == 0, core.output
        assert https_get(https, f"echo.{DOMAIN}")[0] == 200
        everything = nself("health", cwd=folder)  # isolated ones: degraded, as start said
        assert everything.code == 3 and "✗ ghost" in everything.out

        # Teardown removes only this project's containers, networks and volumes.
        decoy = docker(
            "create",
            "--name",
            f"{name}-postgres-1-copy",
            "--label",
            f"{PROJECT_LABEL}={name}-copy",
            standin("http"),
        ).stdout.strip()
        try:
            down = nself("down", cwd=folder)
            assert down.code == 0, down.output
            left = project_objects(name)
            assert left["containers"] == [] and left["networks"] == []
            assert len(left["volumes"]) == 1  # the data survives a plain `down`
            assert nself("down", "--volumes", cwd=folder).code == 0
            assert project_objects(name) == {"containers": [], "networks": [], "volumes": []}
            assert docker("inspect", decoy).returncode == 0  # the look-alike survived
        finally:
            docker("rm", "-f", decoy, check=False)
    finally:
        docker("rmi", "-f", f"{name}-crash:1", check=False)


def test_a_taken_host_port_is_refused_before_anything_starts(
    stack: tuple[Path, str, int], nself: Run
) -> None:
    folder, name, https = stack
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", https))
        squatter.listen()
        result = nself("start", cwd=folder)
    assert result.code == 1
    assert f"error: host port {https} (127.0.0.1) is already taken" in result.err
    assert "NGINX_HTTPS_PORT" in result.err
    assert "Traceback" not in result.output
    assert project_objects(name)["containers"] == []


def test_a_core_image_that_cannot_be_pulled_names_its_override(
    stack: tuple[Path, str, int], nself: Run
) -> None:
    folder, name, _ = stack
    set_env(folder, ".env.local", POSTGRES_IMAGE=f"nself-standin/missing-{name}:1")
    result = nself("start", "--timeout", "60", cwd=folder)
    assert result.code == 1
    assert "PostgreSQL (postgres) failed to start" in result.err
    assert "cannot be pulled" in result.err
    assert "POSTGRES_IMAGE" in result.err and "docker load" in result.err
    assert "Traceback" not in result.output
    assert project_objects(name)["containers"] == []


def test_a_failing_core_service_is_named_with_its_last_log_lines(
    stack: tuple[Path, str, int], nself: Run
) -> None:
    folder, _, _ = stack
    # A hand-written override nginx cannot load: nginx exits at once, again and again.
    (folder / "nginx" / "conf.d" / "broken.conf").write_text("this_is_not_a_directive on;\n")
    result = nself("start", "--timeout", "90", cwd=folder)
    assert result.code == 1, result.output
    assert "error: Nginx (nginx) failed to start" in result.err
    assert "log lines of nginx" in result.err
    assert "unknown directive" in result.err  # nginx's own words, from its logs
    assert "hint: see `nself logs nginx`" in result.err
    assert "Traceback" not in result.output
