"""Deploy, roll back and list releases of one environment's server.

The order is the one trusted deploy tools share: take the server's lock, upload the new
release beside the old one, start it and wait until every service is healthy, watch it for
a while, and only then point ``current`` at it. When the new release fails its health gate
(or falls over while watched), the previous release is started again and stays current: a
failed deploy leaves the old release serving.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nself_sdk import Config, NselfError, find_project, load_config, plan, require_confirmation
from nself_sdk.console import warn
from nself_sdk.remote import EXIT_LOCKED, Server

from . import remote
from .release import Release, collect, pack

Say = Callable[[str], None]
POLL_SECONDS = 2.0


@dataclass
class Outcome:
    env: str
    release: str
    previous: str
    seconds: float
    services: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)


class DeployFailed(NselfError):
    """The new release failed; says whether the previous one is serving again."""


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def target_config(env: str | None) -> Config:
    config = load_config(find_project(), env)
    if config.is_local:
        raise NselfError(
            "the local environment is not deployed: it runs on this machine",
            "run `nself start`, or deploy staging or prod: nself deploy staging",
        )
    return config


class Session:
    """The server's lock held for one command; released however the command ends."""

    def __init__(self, config: Config, server: Server) -> None:
        self.config = config
        self.server = server
        self.who = f"{who()} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
        self.current = ""
        self.reasons: dict[str, str] = {}

    def __enter__(self) -> Session:
        done = self.server.run(remote.PREPARE, self.server.path, self.who)
        if done.returncode == EXIT_LOCKED:
            self.server.close()
            holder = done.stdout.strip() or "unknown"
            raise NselfError(
                f"{self.server.env} is locked by another deploy: {holder}",
                f"wait for it; if it died, run `nself deploy {self.server.env} --unlock`",
            )
        if done.returncode != 0:
            self.server.close()
            raise NselfError(
                f"preparing {self.server.describe()} failed: {_last(done.stderr)}",
                "check that DEPLOY_PATH is writable by DEPLOY_USER",
            )
        self.current = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.server.run(remote.UNLOCK, self.server.path, self.who, "0")
        except NselfError:
            pass  # the connection is gone; `--unlock` shows and clears the stale lock
        finally:
            self.server.close()

    # -- steps --------------------------------------------------------------------------------
    def up(self, release: str, wait: int) -> tuple[bool, str, dict[str, str]]:
        """Start ``release``: (compose said ok, its output, its services' config hashes)."""
        done = self.server.run(
            remote.UP,
            self.server.path,
            release,
            self.config.project_name,
            str(wait),
            timeout=wait + 120,
        )
        output, _sep, listed = done.stdout.partition("@services\n")
        hashes = dict(line.split()[:2] for line in listed.splitlines() if len(line.split()) >= 2)
        return done.returncode == 0, output + done.stderr, hashes

    def containers(self) -> list[dict[str, object]]:
        done = self.server.run(remote.PS, self.server.path, self.config.project_name)
        text = done.stdout.strip()
        if not text:
            return []
        if text.startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [r for r in rows if isinstance(r, dict)]

    def failing(self, expected: dict[str, str]) -> list[str]:
        """Services of a release that are missing, not running, not healthy, or still run
        in a container of another release (their config hash differs).

        The containers are asked directly: Compose may exit 0 from ``up --wait`` when an
        image could not be pulled, leaving the old container running.
        """
        seen: dict[str, tuple[str, str, str]] = {}
        for row in self.containers():
            name = str(row.get("Service", row.get("Name", "?")))
            labels = dict(
                part.split("=", 1) for part in str(row.get("Labels", "")).split(",") if "=" in part
            )
            seen[name] = (
                str(row.get("State", "")).lower(),
                str(row.get("Health", "")).lower(),
                labels.get("com.docker.compose.config-hash", ""),
            )
        bad = []
        self.reasons = {}
        for name, digest in sorted(expected.items()):
            state, health, made_from = seen.get(name, ("missing", "", ""))
            if state == "missing":
                reason = "not created"
            elif state != "running":
                reason = state or "not running"
            elif health in ("unhealthy", "starting"):
                reason = "unhealthy" if health == "unhealthy" else "still starting"
            elif digest and made_from != digest:
                reason = "not updated"
            else:
                continue
            bad.append(name)
            self.reasons[name] = reason
        return bad

    def summary(self, failing: list[str]) -> str:
        return ", ".join(f"{name} {self.reasons.get(name, 'failed')}" for name in failing)

    def logs(self, service: str) -> str:
        done = self.server.run(remote.LOGS, self.server.path, self.config.project_name, service)
        return done.stdout

    def record(self, event: str, release: str, detail: str = "") -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = "\t".join([stamp, event, release or "-", who(), detail or "-"])
        return line

    def switch(self, release: str, line: str, keep: int) -> list[str]:
        done = self.server.run(remote.SWITCH, self.server.path, release, line, str(keep))
        if done.returncode != 0:
            raise NselfError(f"switching to {release} failed: {_last(done.stderr)}")
        self.current = release
        return done.stdout.split()

    def note(self, line: str) -> None:
        self.server.run(remote.RECORD, self.server.path, line)


def _last(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else "no output"


def settings(config: Config) -> tuple[int, int, int]:
    """(health wait, watch seconds, releases kept)."""
    return (
        config.int("DEPLOY_TIMEOUT", 300),
        config.int("DEPLOY_WATCH", 15),
        config.int("DEPLOY_KEEP_RELEASES", 5),
    )


def _gate(session: Session, release: str, wait: int, watch: int, say: Say) -> tuple[list[str], str]:
    """Start ``release`` and hold it to the health gate: (failing services, compose output)."""
    ok, output, services = session.up(release, wait)
    failing = session.failing(services)
    if failing or not ok:
        return failing or ["(compose)"], output
    if watch > 0:
        say(f"  healthy; watching it for {watch}s")
        deadline = time.monotonic() + watch
        while time.monotonic() < deadline:
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            failing = session.failing(services)
            if failing:
                return failing, output
    return [], output


def _explain(session: Session, failing: list[str], output: str) -> str:
    """Why the first failing service failed: its last log lines, or what Compose said."""
    lines: list[str] = []
    if not failing[0].startswith("("):
        lines = session.logs(failing[0]).rstrip().splitlines()[-10:]
    if not any(line.strip() for line in lines):
        said = [x for x in output.splitlines() if x.strip()]
        errors = [x for x in said if "error" in x.lower()]
        lines = (errors or said)[-3:]
        head = "  what Compose said:"
    else:
        head = f"  last log lines of {failing[0]}:"
    return "\n".join([head, *(f"    {line.strip()}" for line in lines)]) if lines else ""


def deploy(env: str | None, confirm: bool, say: Say, dry_run: bool = False) -> Outcome:
    started = time.monotonic()
    config = target_config(env)
    if not dry_run:
        require_confirmation(config, "deploy", confirm)
    server = Server.from_config(config)
    wait, watch, keep = settings(config)
    stack = plan(config.project_dir, config.env)
    for problem in stack.warnings:
        warn(problem.message, problem.hint)
    release: Release = pack(collect(config.project_dir, stack.files))
    services = sorted(s.name for s in stack.stack.services)
    say(f"→ deploying {config.project_name} to {config.env}: {server.describe()}")
    say(
        f"  release {release.id}: {len(services)} services, {release.files} files, "
        f"{release.size / 1024:.0f} KiB"
    )
    if dry_run:
        server.close()
        return Outcome(config.env, release.id, "", time.monotonic() - started, services)
    with Session(config, server) as session:
        previous = session.current
        upload = server.run(remote.UPLOAD, server.path, release.id, stdin=release.archive)
        if upload.returncode != 0:
            raise NselfError(f"uploading the release failed: {_last(upload.stderr)}")
        say(f"  uploaded; starting it (health gate: {wait}s)")
        failing, output = _gate(session, release.id, wait, watch, say)
        if not failing:
            line = session.record("deployed", release.id, f"previous={previous or '-'}")
            pruned = session.switch(release.id, line, keep)
            return Outcome(
                config.env, release.id, previous, time.monotonic() - started, services, pruned
            )
        details = _explain(session, failing, output)
        what = f"release {release.id} failed on {config.env}: {session.summary(failing)}"
        server.run(remote.DISCARD, server.path, release.id)
        if previous:
            say(f"  {session.summary(failing)}: starting {previous} again")
            back, _said = _gate(session, previous, wait, 0, say)
            session.note(session.record("failed", release.id, f"rolled back to {previous}"))
            if back:
                raise DeployFailed(
                    f"{what}; the previous release {previous} did not come back healthy "
                    f"either ({', '.join(back)})" + (f"\n{details}" if details else ""),
                    f"the server needs attention: nself releases --env {config.env}",
                )
            raise DeployFailed(
                f"{what}; rolled back: {previous} is serving again"
                + (f"\n{details}" if details else ""),
                f"fix it and deploy again; `nself releases --env {config.env}` shows the history",
            )
        server.run(remote.STOP, server.path, config.project_name)
        session.note(session.record("failed", release.id, "first release; stopped"))
        raise DeployFailed(
            f"{what}; nothing was serving before, so it was stopped"
            + (f"\n{details}" if details else ""),
            "fix it and deploy again",
        )


@dataclass
class History:
    current: str
    releases: list[str]
    lock: str
    log: list[dict[str, str]]


def history(server: Server) -> History:
    done = server.run(remote.LIST, server.path)
    sections: dict[str, list[str]] = {}
    key = ""
    for line in done.stdout.splitlines():
        if line.startswith("@"):
            key = line[1:]
            sections[key] = []
        elif key and line.strip():
            sections[key].append(line)
    log = []
    for line in sections.get("log", []):
        parts = line.split("\t")
        if len(parts) == 5:
            log.append(dict(zip(("time", "event", "release", "by", "detail"), parts, strict=True)))
    return History(
        current=(sections.get("current") or [""])[0],
        releases=sections.get("releases", []),
        lock=" ".join(sections.get("lock", [])),
        log=log,
    )


def rollback(env: str | None, steps: int, to: str | None, confirm: bool, say: Say) -> Outcome:
    started = time.monotonic()
    config = target_config(env)
    require_confirmation(config, "deploy", confirm, detail="a rollback")
    server = Server.from_config(config)
    wait, watch, keep = settings(config)
    with Session(config, server) as session:
        releases = history(server).releases
        current = session.current
        if to:
            if to not in releases:
                raise NselfError(
                    f"{config.env} has no release {to}",
                    f"see the releases kept on the server: nself releases --env {config.env}",
                )
            target = to
        else:
            if steps < 1:
                raise NselfError("--steps must be 1 or more")
            older = [r for r in releases if r < current] if current else releases
            if len(older) < steps:
                raise NselfError(
                    f"{config.env} keeps {len(older)} release(s) before {current or 'none'}: "
                    f"cannot go back {steps}",
                    f"see them with `nself releases --env {config.env}`",
                )
            target = older[-steps]
        if target == current:
            raise NselfError(f"{target} is already the current release of {config.env}")
        say(f"→ rolling {config.env} back to {target} (from {current or 'none'})")
        failing, output = _gate(session, target, wait, watch, say)
        if failing:
            details = _explain(session, failing, output)
            if current:
                _gate(session, current, wait, 0, say)
            session.note(session.record("rollback-failed", target, f"kept {current or '-'}"))
            raise DeployFailed(
                f"release {target} is not healthy on {config.env} ({session.summary(failing)}); "
                f"{current or 'nothing'} stays current" + (f"\n{details}" if details else ""),
                "pick another release: nself releases --env " + config.env,
            )
        line = session.record("rolled-back", target, f"from={current or '-'}")
        session.switch(target, line, max(keep, len(releases)))
        services = sorted(str(r.get("Service", "")) for r in session.containers())
        return Outcome(config.env, target, current, time.monotonic() - started, services)


def unlock(env: str | None) -> str:
    config = target_config(env)
    server = Server.from_config(config)
    try:
        done = server.run(remote.UNLOCK, server.path, "", "1")
    finally:
        server.close()
    held = done.stdout.strip()
    return "" if held in ("", "-") else held
