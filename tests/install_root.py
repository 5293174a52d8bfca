"""A throw-away Debian server for `nself install`: a debootstrapped root of our own, entered
with chroot inside a network namespace of our own.

What is real: Debian 13's apt installing docker.io and Compose v2 (from packages fetched
once into the root's apt cache, so the install runs offline), systemctl enabling a unit in
the root, iptables rules in the namespace's own netfilter tables, nself itself installed
from a wheel of this checkout into the root's Python. What is shared with this machine:
the Docker engine, through its socket bound into the root (a container engine cannot start
inside a chroot); project folders are bound at the same path inside and outside, so the
engine finds the files the compose file names.

The base root (debootstrap, Python with nself's dependencies, the .deb files) is built
once and kept as a tarball in ``$NSELF_TEST_CACHE`` (default /var/tmp/nself-test-cache);
change ``BASE_KEY`` when the recipe changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("NSELF_TEST_CACHE", "/var/tmp/nself-test-cache"))
BASE_KEY = "install-root-2"
INCLUDE = "python3,python3-venv,ca-certificates,git,iproute2,systemd"
VENV = "/opt/nself-venv"


def _sh(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done


def _dependencies() -> list[str]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def base_tarball() -> Path:
    """The cached base root, built when missing (debootstrap + packages + Python deps)."""
    deps = _dependencies()
    key = hashlib.sha256("\n".join([BASE_KEY, INCLUDE, *deps]).encode()).hexdigest()[:12]
    tarball = CACHE / f"{BASE_KEY}-{key}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / f"work-{uuid.uuid4().hex[:8]}"
    root = work / "root"
    try:
        _sh(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={INCLUDE}",
                "trixie",
                str(root),
            ]
        )
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        with _mounted(root):
            chroot = ["chroot", str(root), "env", "DEBIAN_FRONTEND=noninteractive"]
            _sh([*chroot, "apt-get", "update", "-qq"])
            # Fetched now, installed by `nself install` later (offline, inside the namespace).
            fetch = [
                "apt-get",
                "install",
                "-y",
                "-qq",
                "--download-only",
                "--no-install-recommends",
            ]
            _sh([*chroot, *fetch, "docker.io", "docker-cli", "docker-compose"])
            _sh([*chroot, "python3", "-m", "venv", VENV])
            # Wheels for the root's Python, fetched by this machine's pip (whose network
            # settings work here), installed inside without a network.
            ask = "import sys; print('%d%d' % sys.version_info[:2])"
            py = _sh(["chroot", str(root), "python3", "-c", ask]).stdout.strip()
            wheels = root / "tmp/wheels"
            _sh([str(ROOT / ".venv/bin/pip"), "download", "-q", "-d", str(wheels),
                 "--only-binary=:all:", "--python-version", py, "--implementation", "cp",
                 "--abi", f"cp{py}", "--abi", "abi3", "--abi", "none",
                 "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                 "--platform", "manylinux2014_x86_64", "--platform", "any", *deps])  # fmt: skip
            _sh([*chroot, f"{VENV}/bin/pip", "install", "-q", "--no-index",
                 "--find-links", "/tmp/wheels", *deps])  # fmt: skip
            shutil.rmtree(wheels)
        partial = tarball.with_suffix(".part")
        _sh(["tar", "-C", str(root), "-cf", str(partial), "."])
        partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


@contextmanager
def _mounted(root: Path, binds: Sequence[Path] = (), socket: bool = False) -> Iterator[None]:
    done: list[Path] = []
    try:
        _sh(["mount", "-t", "proc", "proc", str(root / "proc")])
        done.append(root / "proc")
        _sh(["mount", "--bind", "/dev", str(root / "dev")])
        done.append(root / "dev")
        for path in binds:
            inside = root / str(path).lstrip("/")
            inside.mkdir(parents=True, exist_ok=True)
            _sh(["mount", "--bind", str(path), str(inside)])
            done.append(inside)
        if socket:
            inside = root / "run/docker.sock"
            inside.parent.mkdir(parents=True, exist_ok=True)
            inside.touch()
            _sh(["mount", "--bind", "/var/run/docker.sock", str(inside)])
            done.append(inside)
        yield
    finally:
        for path in reversed(done):
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


class Server:
    """One throw-away server: a root of its own in a network namespace of its own."""

    def __init__(self, root: Path, netns: str) -> None:
        self.root = root
        self.netns = netns

    def run(self, *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
        }
        env["LANG"] = "C.UTF-8"
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, "chroot", str(self.root), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def join(self, network: str) -> None:
        """Give the namespace a port on a Docker network's bridge (layer 2, an address
        Docker's IPAM does not hand out), as a server's own network stack has: nself reaches
        the database at its container address. No rule of this machine changes."""
        import ipaddress
        import json

        info = json.loads(_sh(["docker", "network", "inspect", network]).stdout)[0]
        subnet = ipaddress.ip_network(info["IPAM"]["Config"][0]["Subnet"])
        bridge = f"br-{info['Id'][:12]}"
        address = f"{subnet[-6]}/{subnet.prefixlen}"
        outer, inner = f"nj{self.netns[-8:]}", f"nk{self.netns[-8:]}"
        _sh(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner])
        _sh(["ip", "link", "set", inner, "netns", self.netns])
        _sh(["ip", "link", "set", outer, "master", bridge])
        _sh(["ip", "link", "set", outer, "up"])
        for argv in (
            ["ip", "addr", "add", address, "dev", inner],
            ["ip", "link", "set", inner, "up"],
        ):
            _sh(["ip", "netns", "exec", self.netns, *argv])


@contextmanager
def server(tmp: Path, binds: Sequence[Path] = ()) -> Iterator[Server]:
    """A fresh server from the cached base, with this checkout's nself installed in it."""
    tarball = base_tarball()
    root = tmp / "server"
    root.mkdir()
    _sh(["tar", "-C", str(root), "-xf", str(tarball)])
    wheels = tmp / "wheel"
    _sh([str(ROOT / ".venv/bin/pip"), "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(ROOT)])  # fmt: skip
    wheel = next(wheels.glob("nself-*.whl"))
    shutil.copy(wheel, root / "tmp" / wheel.name)
    netns = f"nself-inst-{uuid.uuid4().hex[:8]}"
    _sh(["ip", "netns", "add", netns])
    try:
        with _mounted(root, binds, socket=True):
            box = Server(root, netns)
            done = box.run(f"{VENV}/bin/pip", "install", "-q", "--no-deps", f"/tmp/{wheel.name}")
            assert done.returncode == 0, done.stdout + done.stderr
            (root / "usr/local/bin/nself").symlink_to(f"{VENV}/bin/nself")
            yield box
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
