"""Docker and the host firewall: the ``DOCKER-USER`` chain.

A port Docker publishes is forwarded by NAT rules of Docker's own, before the INPUT chain
UFW and firewalld manage: ``ufw deny 5432`` does not stop a published 5432. Docker leaves
one chain to its users, ``DOCKER-USER``, consulted first for every forwarded packet (see
Docker's "Packet filtering and firewalls" documentation). nself's rules there let new
connections from outside reach containers only on the ports nginx publishes; traffic
between containers, answers, and the host's own connections are untouched. Every rule
carries the comment ``nself``, so applying them again replaces them.

Commands run through ``run(argv) -> (exit code, output)``: on this machine, or on a server
over SSH.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CHAIN = "DOCKER-USER"
MARK = "nself"
# Where `nself install` keeps the rules across reboots.
SCRIPT_PATH = "/usr/local/sbin/nself-docker-user"
UNIT_NAME = "nself-docker-user.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
Run = Callable[[Sequence[str]], tuple[int, str]]


def local_run(argv: Sequence[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, done.stdout + done.stderr


def rules(ports: Sequence[int]) -> list[list[str]]:
    """nself's rules, in order (arguments after ``-A DOCKER-USER``)."""
    tag = ["-m", "comment", "--comment", MARK]
    found = [["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tag, "-j", "RETURN"]]
    found += [["-i", bridge, *tag, "-j", "RETURN"] for bridge in ("docker0", "br-+")]
    for port in sorted(set(ports)):
        found.append(
            [
                "-p",
                "tcp",
                "-m",
                "conntrack",
                "--ctorigdstport",
                str(port),
                "--ctdir",
                "ORIGINAL",
                *tag,
                "-j",
                "RETURN",
            ]
        )
    found += [
        ["-o", bridge, "-m", "conntrack", "--ctstate", "NEW", *tag, "-j", "DROP"]
        for bridge in ("docker0", "br-+")
    ]
    return found


@dataclass
class Chain:
    """What ``iptables -S DOCKER-USER`` shows."""

    exists: bool
    lines: list[str]
    error: str = ""

    @property
    def ours(self) -> list[str]:
        marks = (f"--comment {MARK} ", f'--comment "{MARK}" ')
        return [line for line in self.lines if any(m in line + " " for m in marks)]

    @property
    def drops(self) -> bool:
        """Some rule drops or rejects traffic (nself's or the administrator's own)."""
        return any(" -j DROP" in line or " -j REJECT" in line for line in self.lines)

    def allowed_ports(self) -> set[int]:
        ports = set()
        for line in self.ours:
            words = line.split()
            if "--ctorigdstport" in words:
                value = words[words.index("--ctorigdstport") + 1]
                if value.isascii() and value.isdigit():
                    ports.add(int(value))
        return ports


def read_chain(run: Run, tool: str = "iptables") -> Chain:
    """The chain's rules, from the whole filter table (asking for a chain that does not
    exist fails in ways that differ between iptables versions)."""
    code, out = run([tool, "-w", "-S"])
    if code != 0:
        lines = out.strip().splitlines()
        return Chain(False, [], lines[-1] if lines else f"{tool} failed")
    lines = [line.strip() for line in out.splitlines()]
    return Chain(
        f"-N {CHAIN}" in lines, [line for line in lines if line.startswith(f"-A {CHAIN} ")]
    )


def host_firewall(run: Run) -> str:
    """The firewall front end in charge of the host, if one is active."""
    code, out = run(["ufw", "status"])
    if code == 0 and "status: active" in out.lower():
        return "UFW"
    code, out = run(["firewall-cmd", "--state"])
    if code == 0 and out.strip() == "running":
        return "firewalld"
    return ""


def apply(run: Run, ports: Sequence[int], tool: str = "iptables") -> list[str]:
    """Put nself's rules first in DOCKER-USER (replacing older ones); returns what changed.

    The chain and FORWARD's jump to it are created when Docker has not made them yet."""
    chain = read_chain(run, tool)
    if chain.error:
        from nself_sdk import NselfError

        raise NselfError(f"cannot read {tool}'s {CHAIN} chain: {chain.error}", "run as root")
    changed = []
    if not chain.exists:
        run([tool, "-w", "-N", CHAIN])
        changed.append(f"created the {CHAIN} chain")
    code, _ = run([tool, "-w", "-C", "FORWARD", "-j", CHAIN])
    if code != 0:
        run([tool, "-w", "-I", "FORWARD", "1", "-j", CHAIN])
        changed.append(f"FORWARD now passes through {CHAIN}")
    removed = 0
    for line in chain.ours:
        if run([tool, "-w", "-D", CHAIN, *shlex.split(line)[2:]])[0] == 0:
            removed += 1
    for index, rule in enumerate(rules(ports), 1):
        code, out = run([tool, "-w", "-I", CHAIN, str(index), *rule])
        if code != 0:
            from nself_sdk import NselfError

            raise NselfError(f"{tool} refused a rule: {out.strip()}", "run as root")
    shown = ", ".join(str(p) for p in sorted(set(ports)))
    changed.append(
        f"{CHAIN}: new connections from outside reach containers on {shown} only"
        + (f" (replaced {removed} older nself rules)" if removed else "")
    )
    return changed


def script(ports: Sequence[int]) -> str:
    """A shell script that applies the rules again (at boot, after Docker starts)."""
    lines = [
        "#!/bin/sh",
        "# Written by `nself install`: Docker's published ports pass the host firewall;",
        "# these rules let only nginx's ports in from outside (see docs/security.md).",
        "set -u",
    ]
    for tool in ("iptables", "ip6tables"):
        lines.append(f"if {tool} -w -S {CHAIN} >/dev/null 2>&1 || {tool} -w -N {CHAIN}; then")
        lines.append(
            f"  {tool} -w -C FORWARD -j {CHAIN} 2>/dev/null || {tool} -w -I FORWARD 1 -j {CHAIN}"
        )
        for rule in rules(ports):
            quoted = " ".join(shlex.quote(a) for a in rule)
            lines.append(f"  while {tool} -w -D {CHAIN} {quoted} 2>/dev/null; do :; done")
        for index, rule in enumerate(rules(ports), 1):
            quoted = " ".join(shlex.quote(a) for a in rule)
            lines.append(f"  {tool} -w -I {CHAIN} {index} {quoted}")
        lines.append("fi")
    return "\n".join(lines) + "\n"


def unit() -> str:
    """The systemd unit that runs ``script`` whenever Docker has started."""
    return (
        "# Written by `nself install`.\n"
        "[Unit]\n"
        "Description=nself: let only nginx's ports reach Docker containers from outside\n"
        "After=docker.service\n"
        "PartOf=docker.service\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={SCRIPT_PATH}\n"
        "RemainAfterExit=yes\n\n"
        "[Install]\n"
        "WantedBy=docker.service\n"
    )
