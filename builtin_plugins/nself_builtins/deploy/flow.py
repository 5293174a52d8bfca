"""Deploy, roll back and list releases of one environment's server.

The order is the one trusted deploy tools share: take the server's lock, upload the new
release beside the old one, fetch its images, start it and wait until every service is
healthy, watch it for a while, and only then point ``current`` at it. When the new release
fails its health gate, falls over while watched, or the deploy is interrupted half-way, the
previous release is started again and stays current: a failed deploy leaves the old release
serving.
"""

from __future__ import annotations

import getpass
import re
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from nself_builtins.shared.remote import EXIT_LOCKED, Server
from nself_sdk import (
    Config,
    NselfError,
    UsageError,
    build,
    find_project,
    load_config,
    plan,
    require_confirmation,
)
from nself_sdk.console import warn

from . import remote
from .containers import full_id, inspected, rows
from .release import Release, collect, pack

Say = Callable[[str], None]
POLL_SECONDS = 2.0
IMAGES_TIMEOUT = 3600  # pulling and building images on a slow server
RELEASE_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
CURRENT_EVENTS = ("deployed", "rolled-back")


@dataclass
class Outcome:
    env: str
    release: str
    previous: str
    seconds: float
    services: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


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


def source_version(project: Path) -> str:
    """The git commit of the project (``+dirty`` with uncommitted changes), or ``-``."""
    try:
        head = subprocess.run(
            ["git", "-C", str(project), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        if head.returncode != 0:
            return "-"
        dirty = subprocess.run(
            ["git", "-C", str(project), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "-"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _last(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else "no output"


@dataclass
class History:
    current: str
    releases: list[str]
    lock: str
    log: list[dict[str, str]]

    def went_current(self) -> list[str]:
        """Releases in the order they became current (deploys and rollbacks)."""
        return [row["release"] for row in self.log if row["event"] in CURRENT_EVENTS]

    def back(self) -> list[str]:
        """Earlier current releases still kept, most recent first, without repeats."""
        seen: list[str] = []
        for release in reversed(self.went_current()):
            if release != self.current and release not in seen and release in self.releases:
                seen.append(release)
        if not self.log:  # no log (a server from before it): by name
            seen = [r for r in reversed(self.releases) if r < self.current or not self.current]
        return seen


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
        releases=[r for r in sections.get("releases", []) if RELEASE_ID.match(r)],
        lock=" ".join(sections.get("lock", [])),
        log=log,
    )


class Session:
    """The server's lock held for one command; released however the command ends, unless
    a deploy could not put the server back into a known state (then it is kept, and said)."""

    def __init__(self, config: Config, server: Server) -> None:
        self.config = config
        self.server = server
        self.who = f"{who()} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
        self.current = ""
        self.reasons: dict[str, str] = {}
        # Restarts by the restart policy: (service, count, last start) by container id.
        self.restarts: dict[str, tuple[str, int, str]] = {}
        self.keep_lock = False

    def __enter__(self) -> Session:
        try:
            done = self.server.run(remote.PREPARE, self.server.path, self.who)
        except BaseException:
            self.server.close()
            raise
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
        env = self.server.env
        try:
            if self.keep_lock:
                warn(
                    f"the {env} server's lock is kept: its state needs a look",
                    f"check `nself releases --env {env}`, then `nself deploy {env} --unlock`",
                )
            else:
                self.server.run(remote.UNLOCK, self.server.path, self.who, "0")
        except NselfError:
            warn(
                f"could not release the {env} server's lock (the connection is gone)",
                f"when the server answers again: nself deploy {env} --unlock",
            )
        finally:
            self.server.close()

    # -- steps --------------------------------------------------------------------------------
    def images(self, release: str) -> tuple[bool, str]:
        """Pull and build the release's images before anything is stopped."""
        done = self.server.run(
            remote.IMAGES,
            self.server.path,
            release,
            self.config.project_name,
            timeout=IMAGES_TIMEOUT,
        )
        return done.returncode == 0, done.stdout + done.stderr

    def up(self, release: str, wait: int) -> tuple[bool, str, dict[str, str]]:
        """Start ``release``: (compose said ok, its output, its services' config hashes).
        While a release serves, replicas are replaced one at a time."""
        stages = self.rollout() if self.current else []
        done = self.server.run(
            remote.UP,
            self.server.path,
            release,
            self.config.project_name,
            str(wait),
            *(",".join(stage) for stage in stages),
            timeout=(wait + 300) * (1 + len(stages)),
        )
        output, _sep, listed = done.stdout.partition("@services\n")
        hashes = dict(line.split()[:2] for line in listed.splitlines() if len(line.split()) >= 2)
        return done.returncode == 0, output + done.stderr, hashes

    def rollout(self) -> list[list[str]]:
        """The later stages of replacing this configuration's replicas one at a time."""
        from nself_builtins.shared.service_replicas import rolling_stages
        from nself_sdk import stack

        planned = stack(self.config)
        services = [s.name for s in planned.services]
        return rolling_stages(planned, services, set(services))[1:]

    def containers(self) -> list[dict[str, Any]]:
        """The project's containers (Compose's JSON), each with the engine's whole ``Id``
        ("" if gone), its ``RestartCount`` and when it last started (``StartedAt``)."""
        done = self.server.run(remote.PS, self.server.path, self.config.project_name)
        text, _sep, counted = done.stdout.partition("@restarts\n")
        found = rows(text)
        counts = inspected(counted, 3)
        for row in found:
            row["Id"] = full_id(row, counts)
            count, started = counts.get(row["Id"], ["0", ""])
            row["RestartCount"] = int(count) if count.isdigit() else 0
            row["StartedAt"] = started
        return found

    def restart_counts(self) -> dict[str, tuple[int, str]]:
        """Each container's (restarts by its restart policy, last start), by id."""
        return {
            row["Id"]: (row["RestartCount"], row["StartedAt"])
            for row in self.containers()
            if row["Id"]
        }

    def restarted(self, before: dict[str, tuple[int, str]]) -> list[str]:
        """Services with a container restarted by its restart policy since ``before``
        (``restart_counts``), in the last look of ``failing``."""
        return sorted(
            {
                service
                for container, (service, count, started) in self.restarts.items()
                if _restarted_since(count, started, before.get(container))
            }
        )

    def failing(self, expected: dict[str, str]) -> list[str]:
        """Services of a release that are missing, not running, not healthy, or still run
        in a container of another release (their config hash differs).

        The containers are asked directly: Compose may exit 0 from ``up --wait`` when an
        image could not be pulled, leaving the old container running.
        """
        self.reasons = {}
        if not expected:
            self.reasons["(release)"] = "lists no services (compose config failed)"
            return ["(release)"]
        seen: dict[str, list[tuple[str, str, str]]] = {}
        self.restarts = {}
        for row in self.containers():
            name = str(row.get("Service", row.get("Name", "?")))
            labels = dict(
                part.split("=", 1) for part in str(row.get("Labels", "")).split(",") if "=" in part
            )
            if row["Id"]:
                self.restarts[row["Id"]] = (name, row["RestartCount"], row["StartedAt"])
            seen.setdefault(name, []).append(
                (
                    str(row.get("State", "")).lower(),
                    str(row.get("Health", "")).lower(),
                    labels.get("com.docker.compose.config-hash", ""),
                )
            )
        bad = []
        for name, digest in sorted(expected.items()):
            reason = ""
            for state, health, made_from in seen.get(name, [("missing", "", "")]):
                if state == "missing":
                    reason = "not created"
                elif state != "running":
                    reason = state or "not running"
                elif health in ("unhealthy", "starting"):
                    reason = "unhealthy" if health == "unhealthy" else "still starting"
                elif digest and made_from != digest:
                    reason = "not updated"
                if reason:
                    break
            if reason:
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
        return "\t".join([stamp, event, release or "-", who(), detail or "-"])

    def switch(self, release: str, line: str) -> None:
        done = self.server.run(remote.SWITCH, self.server.path, release, line)
        if done.returncode != 0:
            raise NselfError(f"switching to {release} failed: {_last(done.stderr)}")
        self.current = release

    def prune(self, keep: int) -> list[str]:
        """Remove releases beyond the ``keep`` most recently current ones."""
        seen = history(self.server)
        kept = [seen.current] if seen.current else []
        for release in reversed(seen.went_current()):
            if len(kept) >= keep:
                break
            if release not in kept:
                kept.append(release)
        doomed = [r for r in seen.releases if r not in kept and r != seen.current]
        if doomed:
            self.server.run(remote.PRUNE, self.server.path, *doomed)
        return doomed

    def note(self, line: str) -> None:
        self.server.run(remote.RECORD, self.server.path, line)


def _restarted_since(count: int, started: str, before: tuple[int, str] | None) -> bool:
    """Whether a container's restart policy restarted it since ``before`` (its count and
    last start then; none: made since). A start by hand (Compose's ``up`` starting a
    stopped container it keeps) sets the engine's count back to 0, so a container started
    since ``before`` was restarted by its policy exactly when its count is above 0."""
    if before is None:
        return count > 0
    then, started_then = before
    if started and started_then and started != started_then:
        return count > 0
    return count > then


def settings(config: Config) -> tuple[int, int, int]:
    """(health wait, watch seconds, releases kept)."""
    return (
        config.int("DEPLOY_TIMEOUT", 300),
        config.int("DEPLOY_WATCH", 15),
        config.int("DEPLOY_KEEP_RELEASES", 5),
    )


def _gate(session: Session, release: str, wait: int, watch: int, say: Say) -> tuple[list[str], str]:
    """Start ``release`` and hold it to the health gate: (failing services, compose output).

    Watched (``watch`` seconds), a crash that no look sees (while Compose waits for the
    service, or between two looks) still shows as a restart by the restart policy: each
    container's count is compared with its count before ``up`` (0 for one made or started
    since: ``_restarted_since``)."""
    before = session.restart_counts() if watch > 0 else {}
    ok, output, services = session.up(release, wait)
    failing = session.failing(services)
    if failing or not ok:
        if not failing:
            session.reasons["(compose)"] = "failed"
        return failing or ["(compose)"], output
    if watch > 0:
        say(f"  healthy; watching it for {watch}s")
        deadline = time.monotonic() + watch
        while True:
            restarted = [name for name in session.restarted(before) if name not in failing]
            for name in restarted:
                session.reasons[name] = "restarted"
            if failing or restarted:
                return failing + restarted, output
            if time.monotonic() >= deadline:
                break
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            failing = session.failing(services)
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
    release, services = _release(config, server, dry_run)
    say(f"→ deploying {config.project_name} to {config.env}: {server.describe()}")
    say(
        f"  release {release.id}: {len(services)} services, {release.files} files, "
        f"{release.size / 1024:.0f} KiB"
    )
    if dry_run:
        server.close()
        return Outcome(
            config.env, release.id, "", time.monotonic() - started, services, [], release.paths
        )
    version = source_version(config.project_dir)
    with Session(config, server) as session:
        previous = session.current
        failing, output = _ship(session, config, release, previous, wait, watch, say)
        if not failing:
            session.switch(
                release.id,
                session.record(
                    "deployed", release.id, f"previous={previous or '-'} source={version}"
                ),
            )
            pruned = session.prune(keep)
            return Outcome(
                config.env, release.id, previous, time.monotonic() - started, services, pruned
            )
        _refuse(session, config, failing, output, release.id, previous, wait, say)


def _release(config: Config, server: Server, dry_run: bool) -> tuple[Release, list[str]]:
    """The target's own build (.nself/targets/ENV on a laptop), written, then packed as it
    is, so `nself build --env ENV` shows what a deploy sends; --dry-run writes nothing.
    Returns the release and the names of its services."""
    stack = (
        plan(config.project_dir, config.env)
        if dry_run
        else build(config.project_dir, config.env).plan
    )
    for problem in stack.warnings:
        warn(problem.message, problem.hint)
    private = {Path(p) for p in (server.key, server.known_hosts) if p}
    contents = collect(config.project_dir, stack.stack, stack.files, private, stack.root)
    for link in contents.skipped_links:
        warn(f"{link} is a link to nothing: not shipped")
    return pack(contents), sorted(s.name for s in stack.stack.services)


def _ship(
    session: Session,
    config: Config,
    release: Release,
    previous: str,
    wait: int,
    watch: int,
    say: Say,
) -> tuple[list[str], str]:
    """Upload ``release``, fetch its images and start it behind the health gate; what
    fails the gate (none: healthy). Interrupted, the previous release serves again."""
    server = session.server
    upload = server.run(
        remote.UPLOAD,
        server.path,
        release.id,
        stdin=release.archive,
        timeout=max(120.0, len(release.archive) / 50_000),
    )
    if upload.returncode != 0:
        raise NselfError(f"uploading the release failed: {_last(upload.stderr)}")
    say("  uploaded; fetching its images")
    try:
        fetched, said = session.images(release.id)
        if not fetched:
            warn(f"fetching some images failed: {_last(said)}", "the health gate decides")
        say(f"  starting it (health gate: {wait}s)")
        return _gate(session, release.id, wait, watch, say)
    except BaseException as exc:  # interrupted, connection lost, timeout...
        _recover(session, release.id, previous, wait, say)
        if isinstance(exc, NselfError):
            raise DeployFailed(
                f"the deploy of {release.id} to {config.env} stopped: {exc.message}; "
                + (f"{previous} is serving again" if previous else "it was stopped"),
                exc.hint,
            ) from exc
        raise


def _refuse(
    session: Session,
    config: Config,
    failing: list[str],
    output: str,
    release: str,
    previous: str,
    wait: int,
    say: Say,
) -> NoReturn:
    """A release that failed its gate: discarded, the previous one started again (or,
    for a first release, the stack stopped); always raises ``DeployFailed``."""
    server = session.server
    details = _explain(session, failing, output)
    what = f"release {release} failed on {config.env}: {session.summary(failing)}"
    server.run(remote.DISCARD, server.path, release)
    hint = f"fix it and deploy again; `nself releases --env {config.env}` shows the history"
    if previous:
        say(f"  {session.summary(failing)}: starting {previous} again")
        back = _back_to(
            session, previous, wait, say, ("failed", release, f"rolled back to {previous}")
        )
        if back:
            raise DeployFailed(
                f"{what}; the previous release {previous} did not come back healthy "
                f"either ({session.summary(back)})" + (f"\n{details}" if details else ""),
                f"the server needs attention: nself releases --env {config.env}",
            )
        raise DeployFailed(
            f"{what}; rolled back: {previous} is serving again"
            + (f"\n{details}" if details else ""),
            hint,
        )
    server.run(remote.STOP, server.path, config.project_name)
    session.note(session.record("failed", release, "first release; stopped"))
    raise DeployFailed(
        f"{what}; nothing was serving before, so it was stopped"
        + (f"\n{details}" if details else ""),
        hint,
    )


def _back_to(
    session: Session, previous: str, wait: int, say: Say, record: tuple[str, str, str]
) -> list[str]:
    """Start ``previous`` again after a release failed its gate and note ``record`` (what,
    which release, detail) in the history; what still fails. When ``previous`` does not
    come back healthy either, the server's lock is kept: it needs attention."""
    back, _said = _gate(session, previous, wait, 0, say)
    session.note(session.record(*record))
    if back:
        session.keep_lock = True
    return back


def _recover(session: Session, release: str, previous: str, wait: int, say: Say) -> None:
    """After an interrupted deploy: the previous release again (or the new one stopped)."""
    try:
        if previous:
            say(f"  interrupted: starting {previous} again")
            back, _said = _gate(session, previous, wait, 0, say)
            if back:
                session.keep_lock = True
        else:
            session.server.run(remote.STOP, session.server.path, session.config.project_name)
        session.server.run(remote.DISCARD, session.server.path, release)
        session.note(session.record("interrupted", release, f"back to {previous or '-'}"))
    except BaseException:  # the server is in an unknown state: keep the lock, say so
        session.keep_lock = True


def rollback(
    env: str | None, steps: int | None, to: str | None, confirm: bool, say: Say
) -> Outcome:
    if to is not None and steps is not None:
        raise UsageError("give --steps or --to, not both", "nself rollback --env prod --steps 1")
    if steps is not None and steps < 1:
        raise UsageError("--steps must be 1 or more", "nself rollback --env prod --steps 1")
    if to is not None and not RELEASE_ID.match(to):
        raise UsageError(
            f"{to!r} is not a release name (like 20261203T071500Z-1a2b3c4d)",
            "see the releases with `nself releases --env ENV`",
        )
    started = time.monotonic()
    config = target_config(env)
    require_confirmation(config, "deploy", confirm, detail="a rollback")
    server = Server.from_config(config)
    wait, watch, _keep = settings(config)
    with Session(config, server) as session:
        seen = history(server)
        current = session.current
        if not current:
            raise NselfError(
                f"nothing is deployed on {config.env} yet", f"nself deploy {config.env}"
            )
        if to:
            if to not in seen.releases:
                raise NselfError(
                    f"{config.env} has no release {to}",
                    f"see the releases kept on the server: nself releases --env {config.env}",
                )
            target = to
        else:
            earlier = seen.back()
            if len(earlier) < (steps or 1):
                raise NselfError(
                    f"{config.env} keeps {len(earlier)} earlier release(s) than {current}: "
                    f"cannot go back {steps or 1}",
                    f"see them with `nself releases --env {config.env}`",
                )
            target = earlier[(steps or 1) - 1]
        if target == current:
            raise NselfError(f"{target} is already the current release of {config.env}")
        say(f"→ rolling {config.env} back to {target} (from {current})")
        failing, output = _gate(session, target, wait, watch, say)
        if failing:
            details = _explain(session, failing, output)
            summary = session.summary(failing)
            back = _back_to(
                session, current, wait, say, ("rollback-failed", target, f"kept {current}")
            )
            if back:
                raise DeployFailed(
                    f"release {target} is not healthy on {config.env} ({summary}), and "
                    f"{current} did not come back healthy either ({session.summary(back)})",
                    f"the server needs attention: nself releases --env {config.env}",
                )
            raise DeployFailed(
                f"release {target} is not healthy on {config.env} ({summary}); "
                f"{current} is serving again" + (f"\n{details}" if details else ""),
                "pick another release: nself releases --env " + config.env,
            )
        session.switch(target, session.record("rolled-back", target, f"from={current}"))
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
