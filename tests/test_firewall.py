"""Docker's published ports and the host firewall, in network namespaces of our own.

The first test builds what Docker builds on a server, by hand and small: a "host" namespace
that forwards a published port to a "container" namespace on a bridge named like Docker's
(``br-...``) through a DNAT rule, with a FORWARD chain that jumps to ``DOCKER-USER`` first,
and a host firewall that drops everything coming in (INPUT). From an "outside" namespace the
published port answers anyway: that is the bypass. With nself's rules in ``DOCKER-USER``
only nginx's ports still answer. Nothing of this machine's own firewall is touched.

The second runs `nself harden` inside a namespace against the real engine's published
ports, and its `--fix`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docker_helpers import docker_ok, free_port, standin

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
NSELF = ROOT / ".venv" / "bin" / "nself"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")

LISTENER = """\
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(8)
    while True:
        c, _ = s.accept(); c.sendall(b"hello from %d" % port); c.close()
for port in map(int, sys.argv[1:]):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def sh(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}{done.stderr}"
    return done.stdout


def inside(ns: str, *argv: str) -> str:
    return sh("ip", "netns", "exec", ns, *argv)


@pytest.fixture
def lab() -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    names = {"host": f"fw-h-{tag}", "outside": f"fw-o-{tag}", "ctr": f"fw-c-{tag}"}
    listener: subprocess.Popen[str] | None = None
    for ns in names.values():
        sh("ip", "netns", "add", ns)
    try:
        h, o, c = names["host"], names["outside"], names["ctr"]
        sh("ip", "link", "add", f"o{tag}", "type", "veth", "peer", "name", f"h{tag}")
        sh("ip", "link", "set", f"o{tag}", "netns", o)
        sh("ip", "link", "set", f"h{tag}", "netns", h)
        sh("ip", "link", "add", f"c{tag}", "type", "veth", "peer", "name", f"v{tag}")
        sh("ip", "link", "set", f"c{tag}", "netns", c)
        sh("ip", "link", "set", f"v{tag}", "netns", h)
        bridge = f"br-{tag}"
        for ns, argv in [
            (o, ["ip", "addr", "add", "10.99.0.2/24", "dev", f"o{tag}"]),
            (o, ["ip", "link", "set", f"o{tag}", "up"]),
            (o, ["ip", "link", "set", "lo", "up"]),
            (h, ["ip", "addr", "add", "10.99.0.1/24", "dev", f"h{tag}"]),
            (h, ["ip", "link", "set", f"h{tag}", "up"]),
            (h, ["ip", "link", "add", bridge, "type", "bridge"]),
            (h, ["ip", "addr", "add", "172.30.99.1/24", "dev", bridge]),
            (h, ["ip", "link", "set", bridge, "up"]),
            (h, ["ip", "link", "set", f"v{tag}", "master", bridge]),
            (h, ["ip", "link", "set", f"v{tag}", "up"]),
            (h, ["sysctl", "-q", "net.ipv4.ip_forward=1"]),
            (c, ["ip", "addr", "add", "172.30.99.2/24", "dev", f"c{tag}"]),
            (c, ["ip", "link", "set", f"c{tag}", "up"]),
            (c, ["ip", "link", "set", "lo", "up"]),
            (c, ["ip", "route", "add", "default", "via", "172.30.99.1"]),
        ]:
            inside(ns, *argv)
        # What Docker sets up for a container publishing 5432 and 443, and a host firewall
        # (UFW's default) that lets nothing in.
        for argv in (
            ["-P", "INPUT", "DROP"],
            ["-P", "FORWARD", "DROP"],
            ["-N", "DOCKER-USER"],
            ["-A", "DOCKER-USER", "-j", "RETURN"],
            ["-A", "FORWARD", "-j", "DOCKER-USER"],
            ["-A", "FORWARD", "-o", bridge, "-j", "ACCEPT"],
            ["-A", "FORWARD", "-i", bridge, "-j", "ACCEPT"],
        ):
            inside(h, "iptables", "-w", *argv)
        for port in ("5432", "443"):
            dnat = ["-j", "DNAT", "--to-destination", f"172.30.99.2:{port}"]
            inside(h, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-p", "tcp",
                   "--dport", port, *dnat)  # fmt: skip
        listener = subprocess.Popen(
            ["ip", "netns", "exec", c, sys.executable, "-c", LISTENER, "5432", "443"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield names
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for ns in names.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def reach(ns: str, port: int) -> str:
    """What 10.99.0.1:PORT answers from the outside namespace ('' when nothing does)."""
    code = (
        f"import socket\ns = socket.create_connection(('10.99.0.1', {port}), timeout=2)\n"
        "print(s.recv(64).decode())"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def test_published_ports_bypass_input_rules_until_docker_user_filters_them(
    lab: dict[str, str],
) -> None:
    outside, host = lab["outside"], lab["host"]
    assert reach(outside, 5432) == "hello from 5432", "the bypass: INPUT drops, DNAT forwards"
    assert reach(outside, 443) == "hello from 443"
    apply = (
        "from nself_builtins.shared.firewall import apply, local_run\n"
        "print('; '.join(apply(local_run, [80, 443])))"
    )
    said = inside(host, str(PYTHON), "-c", apply)
    assert "new connections from outside reach containers on 80, 443 only" in said
    assert reach(outside, 5432) == "", "dropped in DOCKER-USER"
    assert reach(outside, 443) == "hello from 443", "nginx's port still answers"
    # Applying again replaces nself's rules instead of adding more.
    said = inside(host, str(PYTHON), "-c", apply.replace("[80, 443]", "[80, 443, 5432]"))
    assert "replaced 7 older nself rules" in said
    assert reach(outside, 5432) == "hello from 5432"
    rules = inside(host, "iptables", "-w", "-S", "DOCKER-USER")
    assert rules.count("--comment nself") == 8


@pytest.fixture
def published() -> Iterator[tuple[str, int]]:
    if not docker_ok():
        pytest.skip("needs a Docker engine")
    name, port = f"nself-fwtest-{uuid.uuid4().hex[:8]}", free_port()
    sh("docker", "run", "-d", "--rm", "--name", name, "-p", f"0.0.0.0:{port}:8080",
       standin("http"), "sh", "-c", "busybox httpd -f -p 8080")  # fmt: skip
    try:
        yield name, port
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_the_firewall_check_and_its_fix_in_a_namespace(
    project: Path, published: tuple[str, int]
) -> None:
    name, port = published
    ns = f"fw-n-{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", ns)
    try:

        def harden(*args: str) -> dict[str, Any]:
            done = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    str(NSELF),
                    "-C",
                    str(project),
                    "harden",
                    "--json",
                    "--layer",
                    "network",
                    *args,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            return json.loads(done.stdout)

        data = harden()
        firewall = next(i for i in data["layers"]["network"] if i["check"] == "firewall")
        assert firewall["level"] == "warning"  # dev: a laptop
        assert f"{name} (0.0.0.0:{port})" in firewall["message"]
        assert "DOCKER-USER filters nothing" in firewall["message"] and firewall["fixable"]
        data = harden("--fix")
        fixed = data["fixed"][0]["changed"]
        assert "created the DOCKER-USER chain" in fixed
        assert "until reboot: `nself install` keeps them" in fixed
        firewall = next(i for i in data["layers"]["network"] if i["check"] == "firewall")
        assert firewall["level"] == "ok"
        assert f"published but filtered: {name} 0.0.0.0:{port}" in firewall["message"]
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
