"""`up`: bring services up and judge each until healthy, failed or out of time.

Images first (built or pulled, one service's failure at a time), host ports next, then
Compose starts the containers while each is watched; a failed service that may be isolated
(not core) is stopped with what needs it: the circuit breaker.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from nself_sdk import Progress, ProgressCallback, ServiceState, UpResult

from .compose import dependents, with_dependencies
from .engine import (
    CONFIG_HASH_LABEL,
    IMAGE_LABEL,
    PORT_TAKEN,
    PROJECT_LABEL,
    SERVICE_LABEL,
    ProjectEngine,
    engine_error,
    state_of,
)

POLL = 0.5
# A container that crashed this many times while starting is given up on.
MAX_RESTARTS = 2
# A service without a health check counts as started once it has run this long.
STABLE_AFTER = 3.0


class Start:
    """One ``up`` of ``services`` (and what they need) on ``engine``."""

    def __init__(
        self,
        engine: ProjectEngine,
        services: Sequence[str] | None,
        *,
        wait: bool,
        timeout: float,
        progress: ProgressCallback | None,
        isolate: Callable[[str], bool] | None,
    ) -> None:
        self.engine = engine
        self.known = engine.services()
        names = engine.known(services)
        self.emit: ProgressCallback = progress or (lambda _p: None)
        self.may_isolate = isolate or (lambda s: self.known[s].role != "core")
        self.targets = with_dependencies(self.known, names)
        self.wait = wait
        self.timeout = timeout
        self.result = UpResult()
        # Each service's container before this start (id, restart count), and what its
        # container carries once Compose has brought it up to date (see ``expected``).
        self.baseline: dict[str, tuple[str, int]] = {}
        self.expected: dict[str, tuple[str, str]] = {}

    def run(self) -> UpResult:
        self.engine.check()
        deadline = time.monotonic() + self.timeout
        if not self._images():  # 1. images
            return self.result
        self._check_ports()  # 2. ports
        compose = self._launch()  # 3. start, watching every container
        pending = set(self.targets)
        if self.wait:
            self._watch(pending, compose, deadline)
        core_down = any(n not in self.result.isolated for n in self.result.failed)
        if core_down:
            # A core service failed: report now rather than wait out the others.
            pending.clear()
        if self.wait:
            # Every target is settled, so Compose has started what it could; it may still
            # be waiting on a dependency that failed: give it a moment, not the timeout.
            deadline = min(deadline, time.monotonic() + (5 if core_down else 15))
        done = compose.finish(deadline if self.wait else time.monotonic() + 60)
        self._engine_trouble(compose)
        if not self.wait:
            if compose.failed or not done:
                raise self.engine.compose_failure("up", compose.text)
            self.result.started = list(self.targets)
            return self.result
        for name in sorted(pending):
            self._fail(name, self._why_pending(name, compose, done))
        self._break_circuit()  # 4. circuit breaker
        self.result.started = [t for t in self.targets if t not in self.result.failed]
        for name in self.engine.built:  # the new containers run: older builds can go
            if name in self.result.started:
                drop_previous_builds(self.engine, name, self.known[name].image)
        self.engine.built.clear()
        return self.result

    def _images(self) -> bool:
        """Build or pull what is missing; False when nothing is left to start."""
        for name, reason in fetch_images(self.engine, self.targets, self.emit).items():
            self._fail(name, reason)
            for other in sorted(dependents(self.known, name) & set(self.targets)):
                self._fail(other, f"needs {name}, which failed")
        if any(n not in self.result.isolated for n in self.result.failed):
            return False
        self.targets = [t for t in self.targets if t not in self.result.failed]
        return bool(self.targets)

    def _check_ports(self) -> None:
        """Refuse before anything starts when a host port a service publishes is taken."""
        for host_ip, port in self.engine.taken_ports(self.targets)[:1]:
            raise self.engine.port_error(host_ip, port)

    def _launch(self) -> ComposeUp:
        """Start Compose. Only the containers this ``up`` leaves are judged: one Compose
        recreates (its definition or image changed) may still run, healthy, until Compose
        replaces it."""
        self.baseline = {
            name: (c.id, int(c.attrs.get("RestartCount") or 0))
            for name, c in self.engine.containers().items()
        }
        # Nothing to tell apart on a first start (no container yet): skip asking Compose.
        if self.wait and set(self.baseline) & set(self.targets):
            self.expected = expected(self.engine, self.targets)
        for name in self.targets:
            self.emit(Progress(name, "starting"))
        argv = [
            *self.engine.compose_args(),
            "--ansi",
            "never",
            "--progress",
            "plain",
            "up",
            "--detach",
            "--no-build",
            "--pull",
            "never",
            "--remove-orphans",
            *self.targets,
        ]
        return ComposeUp(argv, self.engine.folder)

    def _watch(self, pending: set[str], compose: ComposeUp, deadline: float) -> None:
        """Follow each pending container until healthy, failed or ``deadline``."""
        phases: dict[str, str] = {}
        while pending and time.monotonic() < deadline:
            finished = compose.poll()
            every = self.engine.all_containers(only=pending)
            for name in sorted(pending):
                phase, detail = self._judge(name, every.get(name, []), finished, compose)
                if phase in ("healthy", "running"):
                    pending.discard(name)
                    self.emit(Progress(name, phase))
                    continue
                if phase == "failed":
                    pending.discard(name)
                    if finished and compose.failed and detail.startswith("was "):
                        detail += f" ({last_error(compose.text)})"  # compose said why
                    self._fail(name, detail)
                    if not self.may_isolate(name):
                        return  # a core service failed: the start has failed
                    continue
                if phases.get(name) != phase:
                    phases[name] = phase
                    self.emit(Progress(name, phase, detail))
            if pending:
                time.sleep(POLL)

    def _judge(
        self, name: str, found: list[Any], finished: bool, compose: ComposeUp
    ) -> tuple[str, str]:
        """Where ``name``'s start is, from its containers (newest first): the phase and
        what it says (``failed``, ``healthy`` and ``running`` are final)."""
        old_id, seen_restarts = self.baseline.get(name, ("", 0))
        want = self.expected.get(name, ("", ""))
        container = next((c for c in found if _current(c, old_id, want)), None)
        if container is None and found and finished and not compose.failed:
            container = found[0]  # Compose is done and kept it: it is the one
        if container is None and found:
            # The old container is still there: Compose has yet to replace it, so its
            # state (maybe still healthy) says nothing about this start.
            return ("failed", "was not recreated") if finished else ("recreating", "")
        if container is None:
            return ("failed", "was not created") if finished else ("creating", "")
        state = state_of(name, self.known[name].role, container)
        if old_id == container.id:  # count only the restarts of this start
            state = replace(state, restarts=max(0, state.restarts - seen_restarts))
            if not finished:  # an error of an earlier start, until Compose has tried again
                state = replace(state, error="")
        return _phase(state, finished)

    def _engine_trouble(self, compose: ComposeUp) -> None:
        if not compose.failed:
            return
        taken = PORT_TAKEN.search(compose.text)
        if taken:
            raise self.engine.port_error(taken.group(1) or "0.0.0.0", int(taken.group(2)))
        low = compose.text.lower()
        if "docker daemon" in low or "permission denied" in low:
            raise engine_error(compose.text)

    def _why_pending(self, name: str, compose: ComposeUp, done: bool) -> str:
        """Why ``name`` was still not started when the time was up."""
        state = self.engine.state(name)
        reason = f"not healthy after {self.timeout:.0f}s"
        if state is not None and state.health:
            reason += f" (health: {state.health})"
        elif state is not None:
            reason = f"{state.state} after {self.timeout:.0f}s"
        if not done or compose.failed:
            lines = [ln for ln in compose.text.strip().splitlines() if "rror" in ln]
            if lines and name in lines[-1]:
                reason = lines[-1].strip()
        return reason

    def _break_circuit(self) -> None:
        """Stop what failed and may be isolated, with what needs it."""
        to_stop = set()
        for name in list(self.result.isolated):
            to_stop.add(name)
            to_stop |= dependents(self.known, name) & set(self.targets)
        for name in sorted(to_stop - set(self.result.failed)):
            self._fail(name, "stopped: it needs an isolated service")
        running = sorted(n for n in to_stop if n in self.engine.containers())
        if running:
            self.engine.compose("stop", *running, check=False)

    def _fail(self, name: str, reason: str) -> None:
        if name in self.result.failed:
            return
        self.result.failed[name] = reason
        if self.may_isolate(name):
            self.result.isolated.append(name)
            self.emit(Progress(name, "isolated", reason))
        else:
            self.emit(Progress(name, "failed", reason))


class ComposeUp:
    """``docker compose up`` running in the background, its output collected."""

    def __init__(self, argv: list[str], folder: Any) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            cwd=folder,
        )
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._collect, daemon=True)
        self.reader.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def poll(self) -> bool:
        """Compose has exited."""
        return self.proc.poll() is not None

    @property
    def failed(self) -> bool:
        """Compose exited with an error."""
        return self.proc.returncode not in (0, None)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def finish(self, deadline: float) -> bool:
        """Wait for compose to exit until ``deadline``; stop it when it is still waiting."""
        proc = self.proc
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.reader.join(timeout=2)
            return False
        self.reader.join(timeout=2)
        return True


def fetch_images(
    engine: ProjectEngine, targets: list[str], emit: ProgressCallback
) -> dict[str, str]:
    """Build or pull the images ``targets`` lack; returns the services that failed."""
    from docker.errors import ImageNotFound

    known = engine.services()
    client = engine.client()

    def present(image: str) -> bool:
        def get() -> bool:
            try:
                client.images.get(image)
            except ImageNotFound:
                return False
            return True

        return bool(engine.api(get))

    failed: dict[str, str] = {}
    for name in targets:
        service = known[name]
        if not service.image:
            failed[name] = "has no image"
            continue
        if present(service.image):
            continue
        if service.build:
            emit(Progress(name, "building", service.image))
            done = engine.compose("build", name, check=False)
            if done.returncode != 0 or not present(service.image):
                failed[name] = "image build failed: " + build_error(done.stdout + done.stderr)
                continue
            engine.built.append(name)
        else:
            emit(Progress(name, "pulling", service.image))
            done = engine.compose("pull", "--quiet", name, check=False)
            if done.returncode != 0 or not present(service.image):
                failed[name] = f"image {service.image} cannot be pulled: " + last_error(
                    done.stdout + done.stderr
                )
                continue
        emit(Progress(name, "pulled", service.image))
    return failed


def drop_previous_builds(engine: ProjectEngine, service: str, image: str | None) -> None:
    """Remove this project's earlier builds of ``service`` (Compose labels the images it
    builds), so a changed Dockerfile does not leave the old image filling the disk.
    Images a container still uses are kept (the engine refuses to remove them)."""
    from docker.errors import APIError

    if not image:
        return
    client = engine.client()
    labels = [f"{PROJECT_LABEL}={engine.project}", f"{SERVICE_LABEL}={service}"]
    current = engine.api(lambda: client.images.get(image)).id
    for old in engine.api(lambda: client.images.list(filters={"label": labels})):
        if old.id == current:
            continue
        try:
            client.images.remove(old.id)
        except APIError:  # in use by a container, or already gone
            continue


def expected(engine: ProjectEngine, targets: list[str]) -> dict[str, tuple[str, str]]:
    """What each target's container carries once Compose has brought it up to date.

    ``(config hash, image id)``: the hash Compose computes for the service's definition
    in the generated file (``docker compose config --hash``, the value it stamps on the
    container as ``com.docker.compose.config-hash``) and the id of the service's image
    (stamped as ``com.docker.compose.image``). Compose recreates a container when either
    differs. A part that cannot be read is ``""``: such a container is then judged only
    once it is new or Compose has finished.
    """
    done = engine.compose("config", "--hash", "*", check=False, timeout=60)
    hashes: dict[str, str] = {}
    if done.returncode == 0:
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[1]):
                hashes[parts[0]] = parts[1]
    client = engine.client()
    known = engine.services()

    def image_ids() -> dict[str, str]:
        from docker.errors import ImageNotFound

        ids: dict[str, str] = {}
        for name in targets:
            try:
                ids[name] = str(client.api.inspect_image(known[name].image).get("Id") or "")
            except ImageNotFound:
                ids[name] = ""
        return ids

    images: dict[str, str] = engine.api(image_ids)
    return {name: (hashes.get(name, ""), images.get(name, "")) for name in targets}


def _current(container: Any, old_id: str, want: tuple[str, str]) -> bool:
    """Is ``container`` the one Compose leaves for its service after this ``up``?

    True when it was created during this ``up`` (its id is not the one seen before), or
    when it already carries the expected config hash and image id, so Compose keeps it.
    """
    if container.id != old_id:
        return True
    config_hash, image_id = want
    if not config_hash:
        return False  # unknown: wait until Compose has finished
    labels = container.labels or {}
    if labels.get(CONFIG_HASH_LABEL) != config_hash:
        return False
    runs = labels.get(IMAGE_LABEL) or str(container.attrs.get("Image") or "")
    return not image_id or runs == image_id


def _phase(state: ServiceState, compose_finished: bool) -> tuple[str, str]:
    if state.state == "running":
        if state.health in ("healthy",):
            return "healthy", ""
        if state.health == "none":
            # Without a health check, staying up for a moment is the best sign there is.
            if state.uptime is not None and state.uptime >= STABLE_AFTER:
                return "running", ""
            return "waiting", "no health check: watching it stay up"
        if state.health == "unhealthy":
            return "failed", "unhealthy (its health check keeps failing)"
        if state.restarts >= MAX_RESTARTS:
            return "failed", f"crashed and restarted {state.restarts} times"
        return "waiting", "health: starting"
    if state.state == "restarting":
        if state.restarts >= MAX_RESTARTS:
            return "failed", f"keeps crashing (restarted {state.restarts} times)"
        return "starting", "restarting"
    said = f": the engine says: {state.error}" if state.error else ""
    if state.state in ("exited", "dead"):
        if state.restarts >= MAX_RESTARTS or compose_finished or state.error:
            return "failed", f"exited with code {state.exit_code}{said}"
        return "starting", ""
    if state.state == "created" and (compose_finished or state.error):
        return "failed", f"was created but not started{said}"
    return "starting", state.state


def last_error(text: str) -> str:
    """The line of ``text`` that says what went wrong, whole: a URL or a path in it is
    what the user needs to copy, so it is never cut."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if "rror" in line or "denied" in line or "not found" in line:
            return line
    return lines[-1] if lines else "no output"


# BuildKit's summary of a failed step: the step between two "------" lines, then its
# last output lines ("0.890 E: Failed to fetch https://..."); the final "failed to solve:
# ... exit code: N" repeats the whole command.
_STEP = re.compile(r"^ > (\[[^\]]*\])")
_OUTPUT = re.compile(r"^\d+(?:\.\d+)? (.*)$")
_EXIT = re.compile(r"exit code: (\d+)\s*$")


def build_error(text: str) -> str:
    """What an image build said when it failed: the failed step, its exit code and the
    last lines it printed (whole), rather than the repeated command line."""
    lines = [ln.rstrip() for ln in text.strip().splitlines()]
    summary = [i for i, ln in enumerate(lines) if ln.strip() == "------"]
    if len(summary) >= 2:
        block = lines[summary[-2] + 1 : summary[-1]]
        step = _STEP.match(block[0]) if block else None
        said = [m.group(1).strip() for ln in block[1:] if (m := _OUTPUT.match(ln.strip()))]
        said = [ln for ln in said if ln]
        code = _EXIT.search(lines[-1]) if lines else None
        if step is not None and said:
            exited = f" (exit code {code.group(1)})" if code else ""
            return f"step {step.group(1)}{exited}: " + " | ".join(said[-3:])
    return last_error(text)
