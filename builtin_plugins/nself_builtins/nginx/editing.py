"""`nself nginx upstream add|list|remove`: upstreams kept in the env files.

An upstream is a few ``NGINX_UPSTREAM_<NAME>_*`` lines, so every build regenerates it. A
change goes live only after the whole stack plans with it and nginx itself accepted the
generated files (``nginx -t``); otherwise the env file is put back as it was.
"""

from __future__ import annotations

import contextlib
import io
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nself_sdk import ConfigError, NselfError, UsageError
from nself_sdk.envfiles import canonical_env

from . import upstreams
from .upstreams import ROOT, RUN

# Upstreams are part of the project's routing, like custom services: the committed team
# file, unless they are one environment's own (another server's addresses).
FILES = {"dev": ".env.dev", "staging": ".env.staging", "prod": ".env.prod"}
ALL_FILES = (".env.dev", ".env.local", ".env.staging", ".env.prod")


def _environment(name: str) -> str:
    """``--env`` as dev, staging or prod (``local`` and ``production`` are their names too)."""
    try:
        return canonical_env(name)
    except ConfigError as exc:
        raise UsageError(exc.message, "give --env one of: local (dev), staging, prod") from None


def marker(name: str) -> str:
    return f"# --- nginx upstream {name} (nself nginx upstream add) ---"


def check_name(name: str) -> None:
    if not upstreams.NAME.match(name):
        raise UsageError(
            f"invalid upstream name {name!r}",
            "use 1-40 lowercase letters, digits and '-', starting with a letter (e.g. app)",
        )


def parse_servers(servers: list[str], weights: list[int]) -> list[upstreams.Server]:
    """The --server values, with their --weight (in order); one clear line when one does
    not parse."""
    if not servers:
        raise UsageError("an upstream needs at least one --server HOST:PORT")
    if len(servers) > upstreams.MAX_SERVERS:
        raise UsageError(f"at most {upstreams.MAX_SERVERS} servers in one upstream")
    if weights and len(weights) != len(servers):
        raise UsageError(
            f"{len(weights)} --weight for {len(servers)} --server",
            "give one --weight per --server, in the same order, or none (all weigh 1)",
        )
    parsed = []
    for index, text in enumerate(servers):
        try:
            server = upstreams.parse_server(text)
        except ValueError as exc:
            raise UsageError(
                f"--server {text!r} does not parse: {exc}",
                "write HOST:PORT: a stack service (app1:8080), an external host "
                "(api.example.com:443) or an address (10.0.0.7:8080, [2001:db8::1]:8080)",
            ) from None
        weight = weights[index] if weights else 1
        if not 1 <= weight <= upstreams.MAX_WEIGHT:
            raise UsageError(f"--weight {weight}: use 1 to {upstreams.MAX_WEIGHT}")
        parsed.append(upstreams.Server(server.host, server.port, weight))
    if len({(s.host, s.port) for s in parsed}) != len(parsed):
        raise UsageError("a server is listed twice", "list each HOST:PORT once (--weight ranks)")
    return parsed


def lines_of(
    name: str,
    servers: list[upstreams.Server],
    subdomain: str | None,
    max_fails: int | None,
    fail_timeout: str | None,
) -> list[str]:
    prefix = upstreams.PREFIX + upstreams.key(name) + "_"
    lines = [marker(name), f"{prefix}SERVERS=" + ",".join(str(s) for s in servers)]
    if any(s.weight != 1 for s in servers):
        lines.append(f"{prefix}WEIGHTS=" + ",".join(str(s.weight) for s in servers))
    if subdomain is not None:
        lines.append(f"{prefix}SUBDOMAIN={subdomain}")
    if max_fails is not None:
        lines.append(f"{prefix}MAX_FAILS={max_fails}")
    if fail_timeout is not None:
        lines.append(f"{prefix}FAIL_TIMEOUT={fail_timeout}")
    return lines


def declared(project: Path) -> dict[str, list[str]]:
    """Upstream name -> the env files that set any of its lines."""
    from dotenv.parser import parse_stream

    found: dict[str, list[str]] = {}
    for file in ALL_FILES:
        path = project / file
        if not path.is_file():
            continue
        for binding in parse_stream(io.StringIO(path.read_text(encoding="utf-8"))):
            match = upstreams.SERVERS.match(binding.key or "")
            if match:
                found.setdefault(upstreams.name_of(match.group(1)), []).append(file)
    return found


def without(text: str, name: str) -> str:
    """``text`` without the lines of upstream ``name`` (and its marker comment)."""
    from dotenv.parser import parse_stream

    prefix = upstreams.PREFIX + upstreams.key(name) + "_"
    fields = {prefix + f for f in ("SERVERS", "WEIGHTS", "SUBDOMAIN", "MAX_FAILS", "FAIL_TIMEOUT")}
    out = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.key in fields:
            continue
        chunk = binding.original.string
        if binding.key is None:
            chunk = "".join(
                line for line in chunk.splitlines(True) if line.rstrip("\n") != marker(name)
            )
        out.append(chunk)
    result = re.sub(r"\n{3,}", "\n\n", "".join(out))
    return result.rstrip("\n") + "\n" if result.strip() else result


@dataclass
class Applied:
    """What a change did: the files written, whether nginx checked and loaded it."""

    files: list[str] = field(default_factory=list)
    tested: str = ""  # who ran nginx -t: the running nginx, a throw-away one, or nobody
    reloaded: bool = False
    url: str = ""
    notes: list[str] = field(default_factory=list)


def apply(project: Path, edits: dict[str, str], env: str, name: str = "") -> Applied:
    """Write ``edits`` (env file -> new text), then make them live: plan the stack, build
    the local one, let nginx test it and reload the running nginx. Any failure puts every
    file back as it was (and builds it again)."""
    from nself_sdk import build, plan, public_urls
    from nself_sdk.envfiles import write_atomic

    originals = {}
    for file in edits:
        path = project / file
        before = path.read_text(encoding="utf-8") if path.is_file() else None
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
        originals[file] = (before, mode)
    done = Applied(files=sorted(edits))
    local = env == "dev"
    try:
        for file, text in edits.items():
            write_atomic(project / file, text, originals[file][1])
        after = plan(project, env)
        if name:
            done.url = public_urls(after.config, after.stack).get(name, "")
        if local:
            build(project, env)
            done.tested, done.reloaded = _go_live(after.config)
    except BaseException:
        for file, (before, mode) in originals.items():
            path = project / file
            if before is None:
                path.unlink(missing_ok=True)
            elif path.read_text(encoding="utf-8") != before:
                write_atomic(path, before, mode)
        if local:
            with contextlib.suppress(NselfError):  # the error being raised is the one to tell
                build(project, env)
        raise
    return done


def _go_live(config: Any) -> tuple[str, bool]:
    """nginx -t on the generated files by the running nginx, then reload it. When nginx
    does not run, nothing is live yet: `nself start` loads the files (and
    `nself nginx test` checks them now)."""
    from nself_builtins.shared.nginx import is_running, test_then_reload
    from nself_sdk import runtime

    rt = runtime(config)
    try:
        rt.check()
        running = is_running(rt)
    except NselfError:
        return "", False
    if not running:
        return "", False
    # the new upstreams' names, looked up before nginx tests and loads them
    rt.exec("nginx", ["sh", "-c", f"sh {ROOT}/{RUN} resolve"])
    test_then_reload(
        rt,
        "nginx refuses the configuration with this change, nothing was changed",
        "fix the server list (or the file nginx names) and run the command again",
    )
    return "the running nginx", True


def add(
    project: Path,
    name: str,
    servers: list[str],
    weights: list[int],
    subdomain: str | None,
    max_fails: int | None,
    fail_timeout: str | None,
    env: str,
) -> Applied:
    from nself_sdk.checks import is_label

    check_name(name)
    parsed = parse_servers(servers, weights)
    if subdomain is not None and not is_label(subdomain):
        raise UsageError(
            f"--subdomain {subdomain!r} is not a DNS label",
            "use lowercase letters, digits and '-' (one label, e.g. app)",
        )
    if max_fails is not None and not 0 <= max_fails <= upstreams.MAX_FAILS:
        raise UsageError(f"--max-fails {max_fails}: use 0 to {upstreams.MAX_FAILS}")
    if fail_timeout is not None and not upstreams.TIME.match(fail_timeout):
        raise UsageError(f"--fail-timeout {fail_timeout!r} is not a time", "write 10s, 500ms or 1m")
    env = _environment(env)
    taken = declared(project)
    if name in taken:
        raise NselfError(
            f"upstream {name!r} already exists (in {', '.join(taken[name])})",
            f"remove it first: nself nginx upstream remove {name}",
        )
    _subdomain_free(project, env, subdomain or name)
    file = FILES[env]
    path = project / file
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    block = lines_of(name, parsed, subdomain, max_fails, fail_timeout)
    text += ("\n" if text.strip() else "") + "\n".join(block) + "\n"
    return apply(project, {file: text}, env, name)


def _subdomain_free(project: Path, env: str, subdomain: str) -> None:
    from nself_sdk import plan

    routes = plan(project, env).stack.routes
    owner = next((r.service or r.upstream_host for r in routes if r.subdomain == subdomain), "")
    if owner:
        raise NselfError(
            f"subdomain {subdomain!r} is already routed to {owner}",
            "give the upstream its own with --subdomain S",
        )


def remove(project: Path, name: str, env: str) -> Applied:
    check_name(name)
    taken = declared(project)
    if name not in taken:
        known = ", ".join(sorted(taken)) or "none"
        raise NselfError(f"no upstream {name!r}", f"upstreams: {known} (nself nginx upstream list)")
    edits = {}
    for file in taken[name]:
        edits[file] = without((project / file).read_text(encoding="utf-8"), name)
    return apply(project, edits, env)


def resolved(config: Any) -> dict[str, list[str]] | None:
    """What the running nginx resolved: upstream block -> its ``server`` lines (None when
    nginx does not run here)."""
    from nself_builtins.shared.nginx import SERVICE, is_running
    from nself_sdk import runtime

    try:
        rt = runtime(config)
        rt.check()
        if not is_running(rt):
            return None
        script = (
            f'cd {upstreams.RESOLVED} 2>/dev/null && for f in *.conf; do echo "#$f"; cat "$f"; done'
        )
        result = rt.exec(SERVICE, ["sh", "-c", script])
    except NselfError:
        return None
    found: dict[str, list[str]] = {}
    current = ""
    for line in result.output.splitlines():
        if line.startswith("#"):
            current = line[1:].removesuffix(".conf")
            found[current] = []
        elif current and line.startswith("server "):
            found[current].append(line.split()[1])
    return found


def rows(config: Any, stack: Any) -> list[dict[str, Any]]:
    """Every upstream block of the configuration: yours and the replicated services'."""
    from nself_builtins.shared.service_replicas import group, replica_host

    found = []
    for name in upstreams.names(config):
        up = upstreams.upstream(config, name)
        found.append(
            {
                "name": name,
                "kind": "upstream",
                "block": up.block,
                "subdomain": up.subdomain,
                "servers": [{"server": str(s), "weight": s.weight} for s in up.servers],
                "health": up.health,
                # addresses written as IPs: in the block as they are, never looked up
                "literal": [str(s) for s in up.servers if s.literal],
            }
        )
    for route in stack.routes:
        members = group(stack, route.upstream_host)
        if len(members) < 2:
            continue
        found.append(
            {
                "name": route.upstream_host,
                "kind": "replicas",
                "block": upstreams.block_name("replicas", route.upstream_host),
                "subdomain": route.subdomain,
                "servers": [
                    {"server": f"{replica_host(route.upstream_host, k)}:{route.upstream_port}",
                     "weight": 1}
                    for k in range(1, len(members) + 1)
                ],
                "health": upstreams.REPLICA_HEALTH,
            }
        )  # fmt: skip
    return found
