"""Load-balanced upstreams and replicas of stateless services (issue 15).

The configuration tests need no engine: `nself nginx upstream add|remove` keep the env
files, bad input is one line and a hint with nothing written, a build regenerates the
upstream blocks. The proofs run on the real engine with the stand-in images: two servers
answering differently both get requests and, one stopped, every request still succeeds;
with CS_1_REPLICAS=3 a rolling restart under a steady request loop (bounded, loopback
only) loses none.
"""

from __future__ import annotations

import collections
import http.client
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docker_helpers import remove_project, standin, use_standins
from nself_sdk import plan
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]
DOMAIN = "local.nself.org"


def env_text(project: Path, name: str = ".env.dev") -> str:
    return (project / name).read_text()


# -- configuration (no engine) ----------------------------------------------------------


def test_add_writes_the_env_file_and_the_build_regenerates_the_block(
    nself_project: Path, nself: Run
) -> None:
    before = env_text(nself_project)
    r = nself(
        "nginx", "upstream", "add", "app", "--server", "app1:8080", "--server", "10.0.0.7:8080",
        "--weight", "3", "--weight", "1", "--max-fails", "2", "--fail-timeout", "30s",
        cwd=nself_project,
    )  # fmt: skip
    assert r.code == 0, r.output
    added = env_text(nself_project)[len(before) :]
    assert "NGINX_UPSTREAM_APP_SERVERS=app1:8080,10.0.0.7:8080\n" in added
    assert "NGINX_UPSTREAM_APP_WEIGHTS=3,1\n" in added
    assert "https://app.local.nself.org" in r.out
    site = (nself_project / "nginx/sites/app.conf").read_text()
    assert "upstream nself_upstream_app {" in site
    assert "zone nself_upstream_app 64k;" in site
    # An address is written as it is; a name is looked up by nginx's container.
    assert "server 10.0.0.7:8080 weight=1 max_fails=2 fail_timeout=30s;" in site
    assert "include /tmp/nself/upstreams/nself_upstream_app.conf*;" in site
    assert "proxy_pass http://nself_upstream_app;" in site
    assert "proxy_connect_timeout 3s;" in site  # another server can answer
    listed = (nself_project / "nginx/upstreams.list").read_text()
    # with an address beside it, the name is not the upstream's only server ("-")
    assert "nself_upstream_app app1 8080 - weight=3 max_fails=2 fail_timeout=30s" in listed
    assert 'getent hosts "$host"' in (nself_project / "nginx/nself-run.sh").read_text()

    # Removing a generated file and building again brings it back: the env file is the truth.
    (nself_project / "nginx/sites/app.conf").unlink()
    assert nself("build", cwd=nself_project).code == 0
    assert (nself_project / "nginx/sites/app.conf").read_text() == site

    r = nself("nginx", "upstream", "list", "--json", cwd=nself_project)
    assert r.code == 0, r.output
    assert '"name": "app"' in r.out and '"weight": 3' in r.out

    r = nself("nginx", "upstream", "remove", "app", cwd=nself_project)
    assert r.code == 0, r.output
    assert env_text(nself_project) == before
    assert not (nself_project / "nginx/sites/app.conf").exists()

    # One server: nothing to go to instead, so nginx waits for its connection as on any
    # route, and the start script is told the name is the only server ("alone").
    r = nself("nginx", "upstream", "add", "solo", "--server", "app1:8080", cwd=nself_project)
    assert r.code == 0, r.output
    site = (nself_project / "nginx/sites/solo.conf").read_text()
    assert "proxy_pass http://nself_upstream_solo;" in site
    assert "proxy_connect_timeout" not in site
    listed = (nself_project / "nginx/upstreams.list").read_text()
    assert "nself_upstream_solo app1 8080 alone weight=1 max_fails=1 fail_timeout=10s" in listed


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--server", "app1"], "the port is required"),
        (["--server", "app1:http"], "is not a number from 1 to 65535"),
        (["--server", "app1:70000"], "is not a number from 1 to 65535"),
        (["--server", "app1:80;deny all"], "does not parse"),
        (["--server", "ev il:80"], "is not a host name"),
        (["--server", "2001:db8::1:80"], "[ADDRESS]:PORT"),
        (["--server", "a:1", "--server", "b:2", "--weight", "1"], "1 --weight for 2 --server"),
        (["--server", "a:1", "--server", "a:1"], "listed twice"),
        (["--server", "a:1", "--fail-timeout", "soon"], "is not a time"),
        (["--server", "a:1", "--subdomain", "a.b"], "is not a DNS label"),
        (["--server", "a:1", "--env", "bogus"], "unknown environment 'bogus'"),
    ],
)
def test_bad_servers_are_one_line_and_write_nothing(
    nself_project: Path, nself: Run, args: list[str], said: str
) -> None:
    before = env_text(nself_project)
    r = nself("nginx", "upstream", "add", "app", *args, cwd=nself_project)
    assert r.code == 2, r.output
    assert said in r.err and "hint:" in r.err and "Traceback" not in r.output
    assert len(r.err.strip().splitlines()) == 2
    assert env_text(nself_project) == before


def test_env_takes_the_names_every_other_command_takes(nself_project: Path, nself: Run) -> None:
    """`--env local` and `--env development` name dev, as for every other command (they were
    refused as unknown environments)."""
    for alias, name in (("local", "near"), ("development", "nearer")):
        r = nself("nginx", "upstream", "add", name, "--server", "a:1", "--env", alias,
                  cwd=nself_project)  # fmt: skip
        assert r.code == 0, r.output
        assert f"NGINX_UPSTREAM_{name.upper()}_SERVERS=a:1\n" in env_text(nself_project)


def test_taken_names_and_subdomains_are_refused(nself_project: Path, nself: Run) -> None:
    assert nself("nginx", "upstream", "add", "app", "--server", "a:1", cwd=nself_project).code == 0
    before = env_text(nself_project)
    r = nself("nginx", "upstream", "add", "app", "--server", "b:2", cwd=nself_project)
    assert r.code == 1 and "already exists" in r.err and "upstream remove app" in r.err
    r = nself("nginx", "upstream", "add", "api2", "--server", "b:2", "--subdomain", "api",
              cwd=nself_project)  # fmt: skip
    assert r.code == 1 and "subdomain 'api' is already routed" in r.err
    r = nself("nginx", "upstream", "remove", "nope", cwd=nself_project)
    assert r.code == 1 and "no upstream 'nope'" in r.err and "app" in r.err
    assert env_text(nself_project) == before


def test_hand_written_upstreams_are_checked_at_build(nself_project: Path, nself: Run) -> None:
    set_env(
        nself_project,
        NGINX_UPSTREAM_APP_SERVERS="app1:8080,{evil}:80",
        NGINX_UPSTREAM_APP_MAX_FAILS="many",
    )
    r = nself("build", cwd=nself_project)
    assert r.code == 1
    assert ".env.local:" in r.err and "'{evil}:80'" in r.err and "MAX_FAILS='many'" in r.err
    assert not (nself_project / "nginx/sites/app.conf").exists()


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("0", "runs at least one replica"),
        ("21", "more than 20 replicas"),
        ("three", "is not a number of replicas"),
    ],
)
def test_replica_counts_out_of_range_are_refused(
    nself_project: Path, nself: Run, value: str, said: str
) -> None:
    set_env(nself_project, CS_1_NAME="web", CS_1_IMAGE="example/web:1", CS_1_PORT="8001",
            CS_1_REPLICAS=value)  # fmt: skip
    r = nself("build", cwd=nself_project)
    assert r.code == 1 and said in r.err and "CS_1_REPLICAS" in r.err and "hint:" in r.err
    assert "Traceback" not in r.output


def test_replicas_are_services_behind_one_upstream(nself_project: Path, nself: Run) -> None:
    set_env(nself_project, CS_1_NAME="web", CS_1_IMAGE="example/web:1", CS_1_PORT="8001",
            CS_1_SUBDOMAIN="web", CS_1_REPLICAS="3")  # fmt: skip
    the_plan = plan(nself_project)
    web = [s for s in the_plan.stack.services if s.labels.get("org.nself.slot") == "CS_1"]
    assert [s.name for s in web] == ["web", "web-2", "web-3"]
    assert [s.aliases for s in web] == [("web-1",), (), ()]
    assert [s.health_url for s in web] == [
        "http://web-1:8001/health",
        "http://web-2:8001/health",
        "http://web-3:8001/health",
    ]
    files = {f.path: str(f.content) for f in the_plan.files}
    site = files["nginx/sites/web.conf"]
    assert (
        "upstream nself_replicas_web {" in site and "proxy_pass http://nself_replicas_web;" in site
    )
    for k in (1, 2, 3):
        assert (
            f"nself_replicas_web web-{k} 8001 alone weight=1 max_fails=1 fail_timeout=5s"
            in (files["nginx/upstreams.list"])
        )
    # A slot named like a replica is refused.
    set_env(nself_project, CS_2_NAME="web_2", CS_2_IMAGE="example/other:1")
    r = nself("build", cwd=nself_project)
    assert r.code == 1 and "'web-2' of CS_2 is also one of CS_1's" in r.err


# -- the real engine -----------------------------------------------------------------------

# Each server answers GET /who with its own name (the http stand-in, /www made writable).
WHO = """\
FROM {image}
USER root
RUN chown nobody /www
USER nobody
CMD ["sh", "-c", "echo \\"$WHO $(hostname)\\" >/www/who; {serve}"]
"""
SERVE = "trap 'kill $pid; exit 0' TERM INT; busybox httpd -f -p $PORT -h /www & pid=$!; wait $pid"


def docker(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, **kw)  # type: ignore[call-overload,no-any-return]


class Loop:
    """GET requests to ``host`` through nginx on 127.0.0.1, one after another, until told
    to stop (at most ``limit`` requests and ``seconds``): what each one answered."""

    def __init__(self, port: int, host: str, path: str = "/who", limit: int = 4000,
                 seconds: float = 240.0) -> None:  # fmt: skip
        self.port, self.host, self.path = port, host, path
        self.limit, self.seconds = limit, seconds
        self.answers: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def get(self) -> tuple[int, str]:
        context = ssl._create_unverified_context()
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=20, context=context)
        try:
            conn.request("GET", self.path, headers={"Host": self.host})
            response = conn.getresponse()
            return response.status, response.read().decode().strip()
        finally:
            conn.close()

    def run(self) -> None:
        end = time.monotonic() + self.seconds
        count = 0
        while not self.stop.is_set() and count < self.limit and time.monotonic() < end:
            count += 1
            try:
                status, body = self.get()
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            else:
                if status == 200:
                    self.answers[body.split()[0]] += 1
                else:
                    self.failures.append(f"{status}: {body[:80]}")
            time.sleep(0.02)

    def __enter__(self) -> Loop:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)

    @property
    def total(self) -> int:
        return sum(self.answers.values()) + len(self.failures)


@pytest.fixture
def who_stack(tmp_path: Path, nself: Run) -> Iterator[tuple[Path, str, int, str]]:
    name = f"nselfup{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    assert nself("init", str(folder), "--name", name).code == 0
    image = f"{name}-who:1"
    recipe = WHO.format(image=standin("http"), serve=SERVE)
    done = docker("build", "-q", "-t", image, "-", input=recipe)
    assert done.returncode == 0, done.stderr
    _http, https = use_standins(folder)
    try:
        yield folder, name, https, image
    finally:
        remove_project(name)
        docker("rmi", "-f", image)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_two_servers_share_requests_and_one_stopped_loses_none(
    who_stack: tuple[Path, str, int, str], nself: Run
) -> None:
    folder, name, https, image = who_stack
    set_env(folder, ".env.local",
            CS_1_NAME="one", CS_1_IMAGE=image, CS_1_PORT="8080", CS_1_ENV_WHO="one",
            CS_2_NAME="two", CS_2_IMAGE=image, CS_2_PORT="8080", CS_2_ENV_WHO="two")  # fmt: skip
    r = nself("start", "--timeout", "180", cwd=folder)
    assert r.code == 0, r.output
    r = nself("nginx", "upstream", "add", "pool", "--server", "one:8080", "--server", "two:8080",
              cwd=folder)  # fmt: skip
    assert r.code == 0, r.output
    assert "nginx -t passed in the running nginx; loaded by the running nginx" in r.out
    host = f"pool.{DOMAIN}"

    loop = Loop(https, host)
    for _ in range(40):
        status, body = loop.get()
        assert status == 200, body
        loop.answers[body.split()[0]] += 1
    assert loop.answers["one"] >= 10 and loop.answers["two"] >= 10, loop.answers

    listed = nself("nginx", "upstream", "list", cwd=folder)
    assert listed.code == 0 and "nginx sends to: " in listed.out and "none" not in listed.out
    # An address written as an IP is sent to as it is (nothing to resolve).
    r = nself("nginx", "upstream", "add", "lit", "--server", "192.0.2.7:8080", cwd=folder)
    assert r.code == 0, r.output
    listed = nself("nginx", "upstream", "list", cwd=folder)
    assert "nginx sends to: 192.0.2.7:8080" in listed.out, listed.out
    assert nself("nginx", "upstream", "remove", "lit", cwd=folder).code == 0

    # One server stops while requests keep coming: every request is still answered.
    with Loop(https, host, limit=600, seconds=60) as steady:
        time.sleep(2)
        assert docker("stop", "-t", "5", f"{name}-two-1").returncode == 0
        time.sleep(8)
    assert steady.failures == [], steady.failures[:5]
    assert steady.total >= 50 and steady.answers["one"] > 0


# The server process goes away and comes back 3 s later; the container, its name and its
# address stay (so nginx's start script has nothing new to resolve).
COMEBACK = (
    "trap 'exit 0' TERM INT; while :; do busybox httpd -f -p $PORT -h /www & "
    "echo $! >/tmp/httpd.pid; wait $!; sleep 3; done"
)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_the_only_server_of_an_upstream_is_never_skipped(
    who_stack: tuple[Path, str, int, str], nself: Run
) -> None:
    """nginx never takes the only server of a group out (max_fails is ignored there); an
    upstream's block has a placeholder beside it, so nself says so itself: one failed
    request must not turn the next fail_timeout into 502s once the server is back."""
    folder, name, https, _image = who_stack
    image = f"{name}-comeback:1"
    recipe = WHO.format(image=standin("http"), serve=COMEBACK)
    done = docker("build", "-q", "-t", image, "-", input=recipe)
    assert done.returncode == 0, done.stderr
    try:
        set_env(folder, ".env.local", CS_1_NAME="one", CS_1_IMAGE=image, CS_1_PORT="8080",
                CS_1_ENV_WHO="one")  # fmt: skip
        r = nself("start", "--timeout", "180", cwd=folder)
        assert r.code == 0, r.output
        r = nself("nginx", "upstream", "add", "solo", "--server", "one:8080", cwd=folder)
        assert r.code == 0, r.output
        loop = Loop(https, f"solo.{DOMAIN}")
        assert loop.get()[0] == 200

        container = f"{name}-one-1"
        assert docker("exec", container, "sh", "-c", "kill $(cat /tmp/httpd.pid)").returncode == 0
        assert loop.get()[0] == 502  # nothing listens: nginx says so

        def back() -> bool:
            probe = "busybox wget -q -O - http://127.0.0.1:8080/who"
            return docker("exec", container, "sh", "-c", probe).returncode == 0

        deadline = time.monotonic() + 20
        while not back():
            assert time.monotonic() < deadline, "the server did not come back"
            time.sleep(0.2)
        status, body = loop.get()  # at once, well inside fail_timeout (10 s)
        assert status == 200, body
    finally:
        docker("rmi", "-f", image)


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_rolling_restart_of_three_replicas_loses_no_request(
    who_stack: tuple[Path, str, int, str], nself: Run
) -> None:
    folder, name, https, image = who_stack
    set_env(folder, ".env.local", CS_1_NAME="web", CS_1_IMAGE=image, CS_1_PORT="8080",
            CS_1_SUBDOMAIN="web", CS_1_REPLICAS="3", CS_1_ENV_WHO="web")  # fmt: skip
    r = nself("start", "--timeout", "180", cwd=folder)
    assert r.code == 0, r.output
    host = f"web.{DOMAIN}"
    seen = set()
    probe = Loop(https, host)
    deadline = time.monotonic() + 30
    while len(seen) < 3 and time.monotonic() < deadline:  # every replica answers
        status, body = probe.get()
        assert status == 200, body
        seen.add(body.split()[1])
    assert len(seen) == 3, seen

    def started(service: str) -> str:
        return docker("inspect", "-f", "{{.State.StartedAt}}", f"{name}-{service}-1").stdout

    before = {s: started(s) for s in ("web", "web-2", "web-3")}
    with Loop(https, host, limit=6000, seconds=300) as steady:
        time.sleep(1)
        r = nself("restart", "web", "--timeout", "240", cwd=folder)
        time.sleep(1)
    assert r.code == 0, r.output
    assert all(started(s) != before[s] for s in before), "every replica was restarted"
    # one at a time: each replica came back healthy before the next one went away
    order = [r.out.find(f"web ({k}/3) healthy") for k in (1, 2, 3)]
    assert -1 not in order and order == sorted(order), r.out
    assert steady.failures == [], steady.failures[:5]
    assert steady.total >= 100, steady.total


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_a_rolling_restart_of_two_functions_replicas_loses_no_request(
    who_stack: tuple[Path, str, int, str], nself: Run
) -> None:
    """FUNCTIONS_REPLICAS=2 (the functions stand-in, the scaffolded hello function): the
    second waits for the first, both answer the route, a restart under a steady request
    loop replaces them one at a time without a failed request."""
    folder, name, https, _image = who_stack
    set_env(folder, ".env.local", FUNCTIONS_ENABLED="true", FUNCTIONS_IMAGE=standin("functions"),
            FUNCTIONS_REPLICAS="2")  # fmt: skip
    r = nself("start", "--with", "functions", "--timeout", "180", cwd=folder)
    assert r.code == 0, r.output
    host = f"functions.{DOMAIN}"
    probe = Loop(https, host, path="/hello?name=Ada")
    assert probe.get() == (200, "Hello, Ada!")
    containers = (f"{name}-functions-1", f"{name}-functions-2-1")

    def started(container: str) -> str:
        return docker("inspect", "-f", "{{.State.StartedAt}}", container).stdout

    before = {c: started(c) for c in containers}
    with Loop(https, host, path="/hello?name=Ada", limit=6000, seconds=300) as steady:
        time.sleep(1)
        r = nself("restart", "functions", "--timeout", "240", cwd=folder)
        time.sleep(1)
    assert r.code == 0, r.output
    assert all(started(c) != before[c] for c in containers), "both replicas were restarted"
    assert steady.failures == [], steady.failures[:5]
    assert steady.total >= 50, steady.total


def test_a_deploy_replaces_replicas_one_at_a_time(tmp_path: Path, nself: Run) -> None:
    """The server's `up` script: everything but the held replicas first, then each stage
    with --no-deps; a name the release does not have is skipped (the script runs with a
    stand-in `compose` that records its arguments)."""
    from nself_builtins.deploy import remote

    release = tmp_path / "releases" / "r1"
    release.mkdir(parents=True)
    stub = (
        "set -eu\n"
        'compose() { echo "compose $*" >>"$LOG"; '
        'case "$*" in *"config --services"*) printf "%s\\n" postgres nginx web web-2 web-3;; '
        "esac; }\n"
    )
    log = tmp_path / "log"
    done = subprocess.run(
        ["sh", "-c", stub + remote.UP, "up", str(tmp_path), "r1", "demo", "60",
         "web-2,gone-2", "web-3"],
        capture_output=True, text=True, env={"LOG": str(log), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ups = [line.split(" up ", 1)[1] for line in log.read_text().splitlines() if " up " in line]
    assert ups == [
        "--detach --wait --wait-timeout 60 --remove-orphans postgres nginx web",
        "--detach --wait --wait-timeout 60 --no-deps web-2",
        "--detach --wait --wait-timeout 60 --no-deps web-3",
    ]


def test_rolling_stages_keep_all_but_one_replica_serving(nself_project: Path) -> None:
    from nself_builtins.shared.service_replicas import rolling_stages

    set_env(nself_project, CS_1_NAME="web", CS_1_IMAGE="example/web:1", CS_1_PORT="8001",
            CS_1_REPLICAS="3", CS_2_NAME="api", CS_2_IMAGE="example/api:1", CS_2_PORT="8002",
            CS_2_REPLICAS="2")  # fmt: skip
    stack = plan(nself_project).stack
    names = [s.name for s in stack.services]
    stages = rolling_stages(stack, names, set(names))
    assert stages[1:] == [["api-2", "web-2"], ["web-3"]]
    assert "web" in stages[0] and "api" in stages[0] and "postgres" in stages[0]
    # Nothing running yet (a first start): one stage, all at once.
    assert rolling_stages(stack, names, set()) == [names]


def test_functions_replicas_start_after_the_first(nself_project: Path, nself: Run) -> None:
    set_env(nself_project, FUNCTIONS_ENABLED="true", FUNCTIONS_REPLICAS="3")
    stack = plan(nself_project).stack
    names = [s.name for s in stack.services if s.name.startswith("functions")]
    assert names == ["functions", "functions-2", "functions-3"]
    # they share node_modules: the others wait until the first one installed it
    assert all("functions" in s.depends_on for s in stack.services if s.name in names[1:])
    files = {f.path: str(f.content) for f in plan(nself_project).files}
    assert "proxy_pass http://nself_replicas_functions;" in files["nginx/sites/functions.conf"]
    set_env(nself_project, FUNCTIONS_REPLICAS="50")
    r = nself("build", cwd=nself_project)
    assert r.code == 1 and "FUNCTIONS_REPLICAS=50 is more than 20 replicas" in r.err
