"""Running commands in a service's container: collected (``exec``), or streamed to and from
the caller (``exec_stream``; ``nself exec``)."""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any

from nself_sdk import ExecResult

from .engine import ProjectEngine


def exec_collect(
    engine: ProjectEngine,
    service: str,
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    workdir: str | None = None,
) -> ExecResult:
    """Run ``argv`` in ``service``'s running container; its exit code and output."""
    if input is not None:
        out, err = io.BytesIO(), io.BytesIO()
        code = exec_stream(
            engine,
            service,
            argv,
            stdin=io.BytesIO(input),
            stdout=out,
            stderr=err,
            env=env,
            user=user,
            workdir=workdir,
        )
        return ExecResult(code, out.getvalue(), err.getvalue())
    container = engine.running(service)
    code, streams = engine.api(
        lambda: container.exec_run(
            list(argv),
            demux=True,
            environment=dict(env) if env else None,
            user=user or "",
            workdir=workdir,
        )
    )
    stdout, stderr = streams if streams else (b"", b"")
    return ExecResult(int(code if code is not None else 1), stdout or b"", stderr or b"")


def exec_stream(
    engine: ProjectEngine,
    service: str,
    argv: Sequence[str],
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    tty: bool = False,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    workdir: str | None = None,
) -> int:
    container = engine.running(service)
    docker_cli = shutil.which("docker")
    if tty and docker_cli is not None:
        # A terminal session: the docker CLI handles raw mode and window resizes.
        args = [docker_cli, "exec", "-it"]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        if user:
            args += ["-u", user]
        if workdir:
            args += ["-w", workdir]
        return subprocess.call([*args, container.id, *argv])
    source = stdin if stdin is not None else _terminal_in()
    code: int = engine.api(
        lambda: _exec_attached(
            engine.client().api,
            container.id,
            list(argv),
            source,
            stdout or sys.stdout.buffer,
            stderr or sys.stderr.buffer,
            env=dict(env) if env else None,
            user=user,
            workdir=workdir,
        )
    )
    return code


def _terminal_in() -> IO[bytes] | None:
    """The caller's standard input when something is piped in, else nothing."""
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return None
        sys.stdin.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    return sys.stdin.buffer


def _exec_attached(
    api: Any,
    container_id: str,
    argv: list[str],
    stdin: IO[bytes] | None,
    stdout: IO[bytes],
    stderr: IO[bytes],
    *,
    env: dict[str, str] | None,
    user: str | None,
    workdir: str | None,
) -> int:
    """Run ``argv`` through the engine API with stdin sent and output demultiplexed."""
    from docker.utils.socket import STDERR, frames_iter

    exec_id = api.exec_create(
        container_id,
        argv,
        stdin=stdin is not None,
        stdout=True,
        stderr=True,
        environment=env,
        user=user or "",
        workdir=workdir,
    )["Id"]
    sock = api.exec_start(exec_id, socket=True)
    raw = getattr(sock, "_sock", sock)
    feeder = None
    if stdin is not None:
        feeder = threading.Thread(target=_feed, args=(stdin, raw), daemon=True)
        feeder.start()
    try:
        for stream, data in frames_iter(sock, tty=False):
            target = stderr if stream == STDERR else stdout
            target.write(data)
            target.flush()
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    if feeder is not None:
        feeder.join(timeout=1)
    code = api.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else 1


def _feed(source: IO[bytes], raw: Any) -> None:
    """Copy ``source`` into the exec's socket, then close our side so it sees EOF."""
    try:
        while True:
            chunk = source.read(65536)
            if not chunk:
                break
            raw.sendall(chunk)
    except (OSError, ValueError):
        pass
    finally:
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_WR)
