"""`nself deploy`, `rollback` and `releases` against a real server: an OpenSSH daemon on
this machine, running the release on the real Docker engine with Compose v2.

The stack uses the stand-in images (no registry is reachable here; Hasura and Auth are
disabled because their images cannot be obtained). Each release serves its own marker
through a hand-written nginx override, so a test can tell which release answers.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from docker_helpers import remove_project, standin, use_standins
from nself_builtins.deploy import flow
from nself_sdk.testing import Result, set_env
from sshd import SshServer, ssh_server  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_engine")]
Run = Callable[..., Result]


@pytest.fixture
def site(
    tmp_path: Path,
    nself: Run,
    ssh_server: SshServer,  # noqa: F811
) -> Iterator[tuple[Path, Path, int]]:
    """A project whose staging server is this machine over SSH; (project, server path, port)."""
    name = f"nselfdeploy{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    assert nself("init", str(folder), "--name", name).code == 0
    remote = tmp_path / "server" / name
    # The deploy key inside the project, as users keep it: it must never be shipped.
    (folder / "deploy").mkdir()
    shutil.copy(ssh_server.key, folder / "deploy" / "id_deploy")
    http_port, _https = use_standins(
        folder,
        ".env.staging",
        CS_1_NAME="echo_api",
        CS_1_IMAGE=standin("http"),
        CS_1_PORT="8001",
        CS_1_SUBDOMAIN="echo",
        MONITORING_ENABLED="false",
        DEPLOY_HOST="127.0.0.1",
        DEPLOY_PORT=str(ssh_server.port),
        DEPLOY_SSH_KEY="deploy/id_deploy",
        DEPLOY_KNOWN_HOSTS=str(ssh_server.known_hosts),
        DEPLOY_PATH=str(remote),
        DEPLOY_TIMEOUT="120",
        DEPLOY_WATCH="3",
    )
    assert nself("secrets", "generate", "--env", "staging", cwd=folder).code == 0
    try:
        yield folder, remote, http_port
    finally:
        remove_project(name)


def mark(folder: Path, text: str) -> None:
    """A hand-written override answering `text` for the Host `release.test`."""
    (folder / "nginx" / "conf.d" / "release.conf").write_text(
        "server {\n    listen 80;\n    server_name release.test;\n"
        f'    location / {{ return 200 "{text}\\n"; }}\n}}\n'
    )


def served(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": "release.test"})
        return conn.getresponse().read().decode().strip()
    finally:
        conn.close()


@pytest.fixture
def image_of() -> Iterator[Callable[[str], str]]:
    """Builds a variant of the http stand-in whose command is a shell script; removed after."""
    tags: list[str] = []

    def build(script: str) -> str:
        tag = f"nself-test/deploy-{uuid.uuid4().hex[:8]}:1"
        dockerfile = f"FROM {standin('http')}\nCMD {json.dumps(['sh', '-c', script])}\n"
        built = subprocess.run(
            ["docker", "build", "-q", "-t", tag, "-"], input=dockerfile,
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        tags.append(tag)
        return tag

    yield build
    if tags:
        subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True, check=False)


def releases(nself: Run, folder: Path) -> dict[str, object]:
    shown = nself("releases", "--env", "staging", "--json", cwd=folder)
    assert shown.code == 0, shown.output
    data: dict[str, object] = json.loads(shown.out)
    return data


def test_deploy_rolls_back_by_itself_and_on_request(
    site: tuple[Path, Path, int], nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, remote, port = site
    local_compose = (
        (folder / "docker-compose.yml").read_bytes()
        if (folder / "docker-compose.yml").exists()
        else None
    )

    mark(folder, "release-one")
    (folder / ".aws").mkdir()
    (folder / ".aws" / "credentials").write_text("[default]\naws_secret_access_key=x\n")
    (folder / "dump.sql").write_text("-- a local dump\n")
    first = nself("deploy", "staging", cwd=folder)
    assert first.code == 0, first.output
    assert "deployed" in first.err + first.out, first.output
    assert served(port) == "release-one"
    one = releases(nself, folder)
    assert one["current"] and one["releases"] == [one["current"]]
    current = remote / "current"
    assert current.is_symlink()
    # The server got the resolved env only, private; no env layer left the machine.
    release_dir = remote / "releases" / str(one["current"])
    assert (release_dir / ".env.computed").stat().st_mode & 0o077 == 0
    assert not (release_dir / ".env.secrets").exists()
    assert not (release_dir / ".env.staging").exists()
    assert (remote / "releases").stat().st_mode & 0o077 == 0
    # Only what the stack reads was shipped: no deploy key, no stray files.
    shipped = {p.relative_to(release_dir).as_posix() for p in release_dir.rglob("*")}
    assert "nginx/conf.d/release.conf" in shipped and "docker-compose.yml" in shipped
    assert not {"deploy", "deploy/id_deploy", ".aws", "dump.sql", "migrations"} & shipped
    # Folders are readable by services that do not run as root.
    assert (release_dir / "nginx" / "conf.d").stat().st_mode & 0o777 == 0o755
    as_nobody = subprocess.run(
        ["docker", "run", "--rm", "--user", "65534", "-v", f"{release_dir / 'nginx'}:/x:ro",
         standin("http"), "cat", "/x/conf.d/release.conf"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "release-one" in as_nobody.stdout, as_nobody.stderr
    # Deploying never touched the local build.
    after = (
        (folder / "docker-compose.yml").read_bytes()
        if (folder / "docker-compose.yml").exists()
        else None
    )
    assert after == local_compose
    # What it shipped is staging's own build, written to .nself/targets/staging.
    built = folder / ".nself" / "targets" / "staging"
    for rel in ("docker-compose.yml", ".env.computed", "nginx/nginx.conf"):
        assert (release_dir / rel).read_bytes() == (built / rel).read_bytes(), rel

    mark(folder, "release-two")
    second = nself("deploy", "staging", cwd=folder)
    assert second.code == 0, second.output
    assert served(port) == "release-two"
    two = releases(nself, folder)
    assert len(two["releases"]) == 2 and two["current"] != one["current"]  # type: ignore[arg-type]

    # A release whose custom service cannot come up is rolled back by itself.
    mark(folder, "release-three")
    set_env(folder, ".env.staging", CS_1_IMAGE=f"nself-standin/missing-{uuid.uuid4().hex[:6]}:1")
    bad = nself("deploy", "staging", cwd=folder)
    assert bad.code == 1, bad.output
    assert "rolled back" in bad.err and str(two["current"]) in bad.err
    assert "Traceback" not in bad.output
    assert served(port) == "release-two"

    # So is one whose service starts and then falls over; its last log lines are shown.
    set_env(folder, ".env.staging", CS_1_IMAGE=standin("http"), CS_1_ENV_PORT="notaport")
    crashing = nself("deploy", "staging", cwd=folder)
    assert crashing.code == 1, crashing.output
    assert "echo-api" in crashing.err and "rolled back" in crashing.err
    assert "last log lines of echo-api" in crashing.err and "bad address" in crashing.err
    assert served(port) == "release-two"
    three = releases(nself, folder)
    assert three["current"] == two["current"] and len(three["releases"]) == 2  # type: ignore[arg-type]
    events = [row["event"] for row in three["log"]]  # type: ignore[union-attr]
    assert events == ["deployed", "deployed", "failed", "failed"]

    # On request: one step back serves the first release again.
    back = nself("rollback", "--env", "staging", cwd=folder)
    assert back.code == 0, back.output
    assert served(port) == "release-one"
    assert releases(nself, folder)["current"] == one["current"]
    too_far = nself("rollback", "--env", "staging", "--steps", "5", cwd=folder)
    assert too_far.code == 1 and "cannot go back 5" in too_far.err

    # Back means the release that was current before, not the next older name.
    mark(folder, "release-four")
    set_env(folder, ".env.staging", CS_1_ENV_PORT="8001")
    fourth = nself("deploy", "staging", cwd=folder)
    assert fourth.code == 0, fourth.output
    assert served(port) == "release-four"
    again = nself("rollback", "--env", "staging", cwd=folder)
    assert again.code == 0, again.output
    assert served(port) == "release-one"

    # Interrupted after the new release started (Ctrl-C): the current one serves again.
    real_gate = flow._gate
    calls = []

    def gate_then_interrupt(*args: Any, **kwargs: Any) -> Any:
        result = real_gate(*args, **kwargs)
        calls.append(args[1])
        if len(calls) == 1:
            assert served(port) == "release-five"  # the new release was really up
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(flow, "_gate", gate_then_interrupt)
    mark(folder, "release-five")
    stopped = nself("deploy", "staging", cwd=folder)
    assert stopped.code == 130, stopped.output
    assert served(port) == "release-one"
    monkeypatch.undo()
    final = releases(nself, folder)
    assert final["lock"] is None and final["current"] == one["current"]
    assert [r["event"] for r in final["log"]][-1] == "interrupted"  # type: ignore[index]
    doctor = nself("doctor", "--env", "staging", "--check", "deploy", "--json", cwd=folder)
    found = json.loads(doctor.out)
    assert [(f["check"], f["level"]) for f in found] == [("deploy", "ok")], doctor.output
    assert str(one["current"]) in found[0]["message"]


def test_deploy_refuses_what_it_cannot_do(
    site: tuple[Path, Path, int],
    nself: Run,
    ssh_server: SshServer,  # noqa: F811
) -> None:
    folder, remote, _port = site

    local = nself("deploy", "local", cwd=folder)
    assert local.code == 1 and "nself start" in local.err

    prod = nself("deploy", "prod", cwd=folder)
    assert prod.code == 4 and "--confirm" in prod.err  # not confirmed
    assert nself("secrets", "generate", "--env", "prod", cwd=folder).code == 0
    nowhere = nself("deploy", "prod", "--confirm", cwd=folder)
    assert nowhere.code == 1 and "DEPLOY_HOST is not set" in nowhere.err
    assert ".env.prod" in nowhere.err

    dry = nself("deploy", "staging", "--dry-run", cwd=folder)
    assert dry.code == 0, dry.output
    assert "release " in dry.output and "dry run" in dry.output
    spelled = nself("staging", "deploy", "--dry-run", cwd=folder)  # the seed's other form
    assert spelled.code == 0 and "dry run" in spelled.output
    assert not remote.exists()

    # A lock left by a deploy that died is named, and cleared only on request.
    (remote / ".lock").mkdir(parents=True)
    (remote / ".lock" / "info").write_text("alice@laptop 2026-12-01T10:00:00Z\n")
    locked = nself("deploy", "staging", cwd=folder)
    assert locked.code == 1 and "alice@laptop" in locked.err and "--unlock" in locked.err
    doctor = nself("doctor", "--env", "staging", "--check", "deploy", cwd=folder)
    assert doctor.code == 0 and "locked by alice@laptop" in doctor.err + doctor.out
    cleared = nself("deploy", "staging", "--unlock", cwd=folder)
    assert cleared.code == 0 and "alice@laptop" in cleared.err + cleared.out
    assert not (remote / ".lock").exists()

    # Bad rollback options are usage errors, before any connection.
    zero = nself("rollback", "--env", "staging", "--steps", "0", cwd=folder)
    assert zero.code == 2 and "--steps must be 1 or more" in zero.err
    both = nself("rollback", "--env", "staging", "--steps", "1", "--to", "x", cwd=folder)
    assert both.code == 2 and "not both" in both.err
    nothing = nself("rollback", "--env", "staging", cwd=folder)
    assert nothing.code == 1 and "nothing is deployed on staging yet" in nothing.err

    # A server that does not answer: one line, the hint names the settings.
    set_env(folder, ".env.staging", DEPLOY_PORT="1")
    down = nself("deploy", "staging", cwd=folder)
    assert down.code == 1 and "cannot reach" in down.err and "DEPLOY_PORT" in down.err
    unreachable = nself("doctor", "--env", "staging", "--check", "deploy", cwd=folder)
    assert unreachable.code == 1 and "cannot reach" in unreachable.output
    assert "Traceback" not in down.output

    # A host key that changed is refused.
    set_env(folder, ".env.staging", DEPLOY_PORT=str(ssh_server.port))
    forged = folder / "known_hosts"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "k")], check=True
    )
    fake = (folder / "k.pub").read_text().split()
    forged.write_text(f"[127.0.0.1]:{ssh_server.port} {fake[0]} {fake[1]}\n")
    set_env(folder, ".env.staging", DEPLOY_KNOWN_HOSTS=str(forged))
    spoofed = nself("deploy", "staging", cwd=folder)
    assert spoofed.code == 1 and "cannot reach" in spoofed.err
    # A pinned file that does not know the server is no first-use trust; none is an error.
    forged.write_text("")
    unknown = nself("deploy", "staging", cwd=folder)
    assert unknown.code == 1 and "cannot reach" in unknown.err
    assert forged.read_text() == ""
    set_env(folder, ".env.staging", DEPLOY_KNOWN_HOSTS=str(folder / "nowhere"))
    missing = nself("deploy", "staging", cwd=folder)
    assert missing.code == 1 and "DEPLOY_KNOWN_HOSTS" in missing.err
    assert "does not exist" in missing.err

    set_env(folder, ".env.staging", DEPLOY_PATH="relative/path")
    bad = nself("deploy", "staging", cwd=folder)
    assert bad.code == 1 and "DEPLOY_PATH must be an absolute path" in bad.err


def test_the_deployed_database_and_a_release_that_falls_over_later(
    site: tuple[Path, Path, int], nself: Run, image_of: Callable[[str], str]
) -> None:
    """`nself db ... --env staging` works on the server's database over SSH: the tools run
    in the deployed postgres service, SQL goes through a tunnel (nothing runs locally)."""
    folder, _remote, _port = site
    assert nself("deploy", "staging", cwd=folder).code == 0

    assert nself("db", "migrate", "create", "notes", cwd=folder).code == 0
    up = next((folder / "migrations").glob("*_notes")) / "up.sql"
    up.write_text(
        "CREATE TABLE notes (id serial PRIMARY KEY, body text);\n"
        "INSERT INTO notes (body) VALUES ('a'), ('b'), ('c');\n"
    )
    (up.parent / "down.sql").write_text("DROP TABLE notes;\n")
    migrated = nself("db", "migrate", "up", "--env", "staging", cwd=folder)
    assert migrated.code == 0, migrated.output
    status = nself("db", "migrate", "status", "--env", "staging", "--json", cwd=folder)
    assert json.loads(status.out)["migrations"][0]["state"] == "applied", status.output

    name = folder.name
    inside = subprocess.run(
        ["docker", "exec", f"{name}-postgres-1", "psql", "-U", "postgres", "-d", "nself",
         "-Atc", "SELECT count(*) FROM notes"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert inside.stdout.strip() == "3", inside.stderr

    backup = nself("db", "backup", "--env", "staging", "--json", cwd=folder)
    assert backup.code == 0, backup.output
    manifest = json.loads(backup.out[backup.out.index("{") :])
    assert manifest["tables"]["public.notes"] == 3
    assert (folder / "backups" / manifest["name"]).is_file()
    verified = nself("db", "backup", "verify", manifest["name"], "--env", "staging", cwd=folder)
    assert verified.code == 0, verified.output

    # A restore on the server: the dump is staged into the deployed postgres service over
    # SSH, and the previous database (with the row written since) is kept there.
    def server_sql(query: str, dbname: str = "nself") -> str:
        done = subprocess.run(
            ["docker", "exec", f"{name}-postgres-1", "psql", "-U", "postgres", "-d", dbname,
             "-Atc", query],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    server_sql("INSERT INTO notes (body) VALUES ('after the backup')")
    restored = nself("db", "restore", manifest["name"], "--env", "staging", cwd=folder)
    assert restored.code == 0, restored.output
    assert server_sql("SELECT count(*) FROM notes") == "3"
    (kept,) = [
        d for d in server_sql("SELECT datname FROM pg_database").split() if "__pre_restore_" in d
    ]
    assert kept in restored.out, restored.output
    assert server_sql("SELECT count(*) FROM notes", kept) == "4"
    staged = subprocess.run(
        ["docker", "exec", f"{name}-postgres-1", "sh", "-c", "ls /tmp/nself-stage 2>/dev/null"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert staged.stdout.strip() == "", staged.stdout  # the staged dump is gone
    pruned = nself("db", "backup", "prune", "--yes", "--env", "staging", cwd=folder)
    assert pruned.code == 0 and kept in pruned.output, pruned.output
    assert "__pre_restore_" not in server_sql("SELECT string_agg(datname, ' ') FROM pg_database")

    # The deployed stack is looked at with the usual commands and --env.
    status = nself("status", "--env", "staging", "--json", cwd=folder)
    assert status.code == 0, status.output
    rows = {r["service"]: (r["state"], r["health"]) for r in json.loads(status.out)}
    assert rows == {s: ("running", "healthy") for s in ("echo-api", "nginx", "postgres")}
    assert nself("health", "--env", "staging", cwd=folder).code == 0
    logs = nself("logs", "postgres", "--env", "staging", "--tail", "20", cwd=folder)
    assert logs.code == 0 and "database system is ready" in logs.out, logs.output
    checked = nself("doctor", "--env", "staging", "--json", cwd=folder)
    found = {(f["check"], f["level"]) for f in json.loads(checked.out)}
    assert ("services", "ok") in found and ("deploy", "ok") in found, checked.output
    assert not {c for c, _level in found} & {"engine", "ports", "disk"}  # nothing local
    start = nself("start", "--env", "staging", cwd=folder)
    assert start.code == 1 and "nself deploy staging" in start.err

    # Rotating the database password changes it in the server's database; the next
    # release carries it to the services.
    rotated = nself(
        "secrets", "rotate", "POSTGRES_PASSWORD", "--env", "staging", "--yes", cwd=folder
    )
    assert rotated.code == 0, rotated.output
    assert "nself deploy staging" in rotated.err
    assert nself("deploy", "staging", cwd=folder).code == 0
    after = nself("db", "migrate", "status", "--env", "staging", "--json", cwd=folder)
    assert after.code == 0, after.output  # the tunnel logs in with the new password

    # A release that passes the gate and falls over while watched is rolled back too. It
    # falls over late enough for the gate to pass on a loaded machine (the watch ends at
    # the crash, so waiting longer costs nothing when the machine is quiet).
    late_image = image_of("busybox httpd -f -p ${PORT} -h /www & sleep 30; exit 1")
    set_env(folder, ".env.staging", CS_1_IMAGE=late_image, DEPLOY_WATCH="90")
    late = nself("deploy", "staging", cwd=folder)
    assert late.code == 1, late.output
    assert "watching it" in late.output and "rolled back" in late.err
    assert "echo-api" in late.err


def test_a_crash_no_look_of_the_watch_sees_is_counted(
    site: tuple[Path, Path, int], nself: Run, image_of: Callable[[str], str]
) -> None:
    """The watch compares each container's restart count with what it was before `up`, so
    a crash counts even when no look finds the service down: one while `up --wait` waits
    for it (Compose sees it restarting and waits on; on a loaded machine Compose may see
    it unhealthy first), and crashes the engine undoes within 0.1 s (after 10 s of running
    its back-off starts over) in a service without a health check, which a look finds
    running (or, by chance, restarting)."""
    folder, _remote, port = site
    mark(folder, "release-one")
    assert nself("deploy", "staging", cwd=folder).code == 0
    good = releases(nself, folder)["current"]
    # `nself status --env staging` reads the engine's side of each container too.
    status = nself("status", "--env", "staging", "--json", cwd=folder)
    assert status.code == 0, status.output
    rows = {r["service"]: r for r in json.loads(status.out)}
    assert isinstance(rows["echo-api"]["uptime_s"], float), rows
    assert rows["echo-api"]["restarts"] == 0, rows

    once = image_of(
        "[ -e /tmp/crashed ] || { touch /tmp/crashed; sleep 2; exit 1; }; "
        "exec busybox httpd -f -p ${PORT} -h /www"
    )
    set_env(folder, ".env.staging", CS_1_IMAGE=once, DEPLOY_WATCH="4")
    crashed = nself("deploy", "staging", cwd=folder)
    assert crashed.code == 1, crashed.output
    assert "failed on staging: echo-api" in crashed.err, crashed.output
    assert "rolled back" in crashed.err, crashed.output

    looping = image_of("busybox httpd -f -p ${PORT} -h /www & sleep 11; exit 1")
    set_env(folder, ".env.staging", CS_1_IMAGE=looping, CS_1_HEALTHCHECK="none", DEPLOY_WATCH="30")
    looped = nself("deploy", "staging", cwd=folder)
    assert looped.code == 1, looped.output
    assert re.search(r"failed on staging: echo-api restart(ed|ing);", looped.err), looped.output
    assert "rolled back" in looped.err, looped.output
    assert releases(nself, folder)["current"] == good
    assert served(port) == "release-one"


def test_a_kept_container_counts_the_crashes_since_its_last_start(
    site: tuple[Path, Path, int], nself: Run, image_of: Callable[[str], str]
) -> None:
    """Restarts from before a deploy never fail it, and a crash after `up` always does: the
    engine sets a container's restart count back to 0 when it is started by hand, as `up`
    starts a stopped container it keeps (its configuration unchanged), so a crash after
    that start leaves the count below the one taken before `up`."""
    folder, _remote, port = site
    crashes = image_of(
        "if [ -e /tmp/armed ]; then rm /tmp/armed; sleep 2; exit 1; fi; "
        "busybox httpd -f -p ${PORT} -h /www & "
        "while [ ! -e /tmp/die ]; do sleep 0.2; done; rm /tmp/die; exit 1"
    )
    set_env(folder, ".env.staging", CS_1_IMAGE=crashes, DEPLOY_WATCH="4")
    mark(folder, "release-one")
    assert nself("deploy", "staging", cwd=folder).code == 0
    container = f"{folder.name}-echo-api-1"

    def engine(*args: str) -> str:
        done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def restarts() -> str:
        return engine("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", container)

    for count in (1, 2):  # crashes long before the next deploy
        engine("exec", container, "touch", "/tmp/die")
        for _ in range(150):
            if restarts() == f"{count} running":
                break
            time.sleep(0.2)
        assert restarts() == f"{count} running"
    # `nself status --env` counts them (a check of 0 alone could not see counts lost).
    status = nself("status", "--env", "staging", "--json", cwd=folder)
    assert status.code == 0, status.output
    row = {r["service"]: r for r in json.loads(status.out)}["echo-api"]
    assert (row["state"], row["restarts"]) == ("running", 2), row
    assert isinstance(row["uptime_s"], float), row
    mark(folder, "release-two")
    kept = nself("deploy", "staging", cwd=folder)
    assert kept.code == 0, kept.output
    assert restarts() == "2 running"  # the same container, kept by `up`
    good = releases(nself, folder)["current"]

    # Stopped, it crashes once when started again: by `up`, which keeps it.
    engine("exec", container, "touch", "/tmp/armed")
    engine("stop", "-t", "1", container)
    status = nself("status", "--env", "staging", "--json", cwd=folder)
    row = {r["service"]: r for r in json.loads(status.out)}["echo-api"]
    assert (row["state"], row["uptime_s"], row["restarts"]) == ("exited", None, 2), row
    shown = nself("status", "--env", "staging", cwd=folder)
    assert re.search(r"echo-api +exited \(\d+\)", shown.out), shown.output
    mark(folder, "release-three")
    crashed = nself("deploy", "staging", cwd=folder)
    assert crashed.code == 1, crashed.output
    assert "failed on staging: echo-api" in crashed.err, crashed.output
    assert "rolled back" in crashed.err, crashed.output
    assert releases(nself, folder)["current"] == good
    assert served(port) == "release-two"


def test_a_replicated_service_is_replaced_one_container_at_a_time_and_watched(
    site: tuple[Path, Path, int], nself: Run, image_of: Callable[[str], str]
) -> None:
    """A release that replaces a replicated service in stages passes the watch (each new
    container counts from 0, the kept ones from their count before `up`)."""
    folder, _remote, _port = site
    serve = "exec busybox httpd -f -p ${PORT} -h /www"
    set_env(folder, ".env.staging", CS_1_IMAGE=image_of(serve), CS_1_REPLICAS="2")
    first = nself("deploy", "staging", cwd=folder)
    assert first.code == 0, first.output
    newer = image_of(f"true; {serve}")
    set_env(folder, ".env.staging", CS_1_IMAGE=newer, DEPLOY_WATCH="4")
    second = nself("deploy", "staging", cwd=folder)
    assert second.code == 0, second.output
    images = subprocess.run(
        ["docker", "ps", "--filter", f"label=com.docker.compose.project={folder.name}",
         "--format", "{{.Image}} {{.Status}}"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    assert images.count(newer) == 2, images
